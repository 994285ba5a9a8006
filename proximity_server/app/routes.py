"""The route table: every URL the server answers, in one place."""

from __future__ import annotations

from aiohttp import web

from handlers import (
    accounts,
    admin,
    assessment,
    conversations,
    data_rights,
    discover,
    health,
    likes,
    metrics,
    openapi,
    photos,
    profiles,
    proximity,
    stats,
    suggestions,
    user_socket,
)
from handlers import web as web_app


def add_routes(app: web.Application) -> list[web.AbstractRoute]:
    return app.router.add_routes(
        [
            web.get("/", web_app.index, allow_head=False),
            web.get("/docs", web_app.docs, allow_head=False),
            web.get("/static/{path:.+}", web_app.static, allow_head=False),
            web.get("/livez", health.livez, allow_head=False),
            web.get("/health", health.health, allow_head=False),
            web.get("/openapi.json", openapi.openapi, allow_head=False),
            web.post("/session", proximity.create_session),
            web.post("/session/rotate", proximity.rotate),
            web.post("/match", proximity.match),
            web.get("/ws/{ble_token}", proximity.proximity_socket, allow_head=False),
            web.get("/ws", user_socket.user_socket, allow_head=False),
            web.get("/stats", stats.stats, allow_head=False),
            web.get("/metrics", metrics.metrics, allow_head=False),
            web.post("/auth/register", accounts.register),
            web.post("/auth/login", accounts.login),
            web.post("/auth/refresh", accounts.refresh),
            web.post("/auth/logout", accounts.logout),
            web.post("/auth/logout-all", accounts.logout_all),
            web.get("/me", profiles.me, allow_head=False),
            web.delete("/me", data_rights.erase_me),
            web.post("/me/export", data_rights.start_export),
            web.get("/me/export/{export_id}", data_rights.export_status, allow_head=False),
            web.get("/me/export/{export_id}/download", data_rights.download_export, allow_head=False),
            web.put("/me/profile", profiles.put_profile),
            web.patch("/me/profile", profiles.patch_profile),
            web.get("/profiles/{user_id}", profiles.public_profile, allow_head=False),
            web.get("/discover", discover.discover, allow_head=False),
            web.post("/me/photos", photos.upload_photo),
            web.get("/me/photos", photos.list_photos, allow_head=False),
            web.put("/me/photos/order", photos.reorder_photos),
            web.delete("/me/photos/{photo_id}", photos.delete_photo),
            web.get("/photos/{photo_id}", photos.photo, allow_head=False),
            web.get("/photos/{photo_id}/thumb", photos.photo_thumb, allow_head=False),
            web.post("/likes", likes.like),
            web.get("/matches", likes.list_matches, allow_head=False),
            web.delete("/matches/{match_id}", likes.unmatch),
            web.post("/blocks", likes.block),
            web.delete("/blocks/{user_id}", likes.unblock),
            web.post("/reports", likes.report),
            web.get("/conversations", conversations.list_conversations, allow_head=False),
            web.get("/conversations/{conversation_id}/messages", conversations.list_messages, allow_head=False),
            web.post("/conversations/{conversation_id}/messages", conversations.send_message),
            web.post("/conversations/{conversation_id}/read", conversations.mark_read),
            # Admin console (API; the page is added below).
            web.get("/stats/history", admin.history, allow_head=False),
            web.get("/admin/live", admin.live, allow_head=False),
            web.get("/admin/audit", admin.audit, allow_head=False),
            web.get("/admin/reports", admin.reports, allow_head=False),
            web.post("/admin/reports/{report_id}/resolve", admin.resolve_report),
            web.post("/admin/users/{user_id}/ban", admin.ban),
            web.delete("/admin/users/{user_id}/ban", admin.unban),
            web.get("/admin/", web_app.admin_console, allow_head=False),
            # Compatibility: the attachment assessment and daily suggestions.
            web.get("/me/assessment", assessment.questions, allow_head=False),
            web.put("/me/assessment", assessment.submit),
            web.get("/me/assessment/result", assessment.result, allow_head=False),
            web.get("/suggestions", suggestions.suggestions, allow_head=False),
        ]
    )
