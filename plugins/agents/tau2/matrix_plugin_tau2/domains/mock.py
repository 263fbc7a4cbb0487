"""The mock domain: a small task tracker (assistant side) and a notification inbox (user side).

Tool names, arguments, result shapes and errors follow tau2-bench's mock domain, the
smallest domain, used to exercise every part of the workflow in seconds.
"""
from __future__ import annotations

import functools
from typing import Literal

from ..env import (
    DATA_DIR,
    GENERIC,
    READ,
    WRITE,
    Domain,
    ToolError,
    Toolkit,
    load_json,
    tool,
)

_DIR = DATA_DIR / "domains" / "mock"
TaskStatus = Literal["pending", "completed"]


class MockTools(Toolkit):
    """The assistant's tools over ``tasks`` and ``users``."""

    side = "assistant"

    @tool(WRITE)
    def create_task(self, user_id: str, title: str, description: str | None = None) -> dict:
        """Create a new pending task for a user.

        Args:
            user_id: The ID of the user the task belongs to.
            title: The title of the task.
            description: An optional longer description of the task.
        """
        if not self.db.has("users", user_id):
            raise ToolError(f"User {user_id} not found")
        # Ids count the existing tasks, as tau2 does: task_1 exists, so the first new one is task_2.
        task_id = f"task_{self.db.count('tasks') + 1}"
        task = {"task_id": task_id, "title": title, "description": description, "status": "pending"}
        self.db.put("tasks", task_id, task)
        self.db.edit("users", user_id)["tasks"].append(task_id)
        return task

    @tool(READ)
    def get_users(self) -> list:
        """List every user in the database with the ids of their tasks."""
        return list(self.db.values("users"))

    @tool(WRITE)
    def update_task_status(self, task_id: str, status: TaskStatus) -> dict:
        """Set the status of an existing task.

        Args:
            task_id: The ID of the task to change.
            status: The new status: "pending" or "completed".
        """
        if not self.db.has("tasks", task_id):
            raise ToolError(f"Task {task_id} not found")
        task = self.db.edit("tasks", task_id)
        task["status"] = status
        return task

    @tool(GENERIC)
    def transfer_to_human_agents(self, summary: str) -> str:
        """Hand the conversation over to a human agent, with a summary of the user's issue.

        Only transfer when the user explicitly asks for a human, or when the policy and the
        available tools do not allow you to solve the user's issue.

        Args:
            summary: A short summary of the user's issue for the human agent.
        """
        return "Transfer successful"

    def assert_number_of_tasks(self, user_id: str, expected_number: int) -> bool:
        if not self.db.has("users", user_id):
            raise ToolError(f"User {user_id} not found")
        return len(self.db.get("users", user_id)["tasks"]) == expected_number

    def assert_task_status(self, task_id: str, expected_status: str) -> bool:
        if not self.db.has("tasks", task_id):
            raise ToolError(f"Task {task_id} not found")
        return self.db.get("tasks", task_id)["status"] == expected_status


class MockUserTools(Toolkit):
    """The simulated user's own device: a notification inbox."""

    side = "user"

    @tool(READ)
    def check_notifications(self) -> list:
        """List the notifications in your inbox with their status (unread or read)."""
        return list(self.db.values("notifications"))

    @tool(WRITE)
    def dismiss_notification(self, notification_id: str) -> dict:
        """Dismiss a notification from your inbox, which marks it as read.

        Args:
            notification_id: The ID of the notification to dismiss.
        """
        if not self.db.has("notifications", notification_id):
            raise ToolError(f"Notification {notification_id} not found")
        note = self.db.edit("notifications", notification_id)
        note["status"] = "read"
        return note

    def add_notification(self, notification_id: str, message: str, task_id: str | None = None) -> dict:
        note = {"notification_id": notification_id, "message": message, "status": "unread", "task_id": task_id}
        self.db.put("notifications", notification_id, note)
        return note

    def assert_notification_status(self, notification_id: str, expected_status: str) -> bool:
        if not self.db.has("notifications", notification_id):
            raise ToolError(f"Notification {notification_id} not found")
        return self.db.get("notifications", notification_id)["status"] == expected_status


@functools.cache
def _policy() -> str:
    return (_DIR / "policy.md").read_text(encoding="utf-8")


def domain() -> Domain:
    return Domain(
        name="mock",
        assistant_tools=MockTools,
        load_db=lambda: load_json(_DIR / "db.json"),
        policy=_policy,
        user_tools=MockUserTools,
        load_user_db=lambda: load_json(_DIR / "user_db.json"),
    )
