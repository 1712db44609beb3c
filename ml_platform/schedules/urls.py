from django.urls import path

from ml_platform.schedules import notification_pages, pages

urlpatterns = [
    path(
        "projects/<int:project_id>/notifications/",
        notification_pages.project_notifications,
        name="project-notifications",
    ),
    path(
        "projects/<int:project_id>/notifications/<slug:action>/",
        notification_pages.project_notification_action,
        name="project-notification-action",
    ),
    path("schedules/new/", pages.schedule_dialog, name="schedule-new"),
    path("schedules/next-runs/", pages.next_runs, name="schedule-next-runs"),
    path("schedules/<int:schedule_id>/", pages.schedule_page, name="schedule"),
    path("schedules/<int:schedule_id>/edit/", pages.edit_dialog, name="schedule-edit"),
    path("schedules/<int:schedule_id>/<slug:action>/", pages.schedule_action, name="schedule-action"),
]
