from django.urls import path

from ml_platform.schedules import pages

urlpatterns = [
    path("schedules/new/", pages.schedule_dialog, name="schedule-new"),
    path("schedules/next-runs/", pages.next_runs, name="schedule-next-runs"),
    path("schedules/<int:schedule_id>/", pages.schedule_page, name="schedule"),
    path("schedules/<int:schedule_id>/edit/", pages.edit_dialog, name="schedule-edit"),
    path("schedules/<int:schedule_id>/<slug:action>/", pages.schedule_action, name="schedule-action"),
]
