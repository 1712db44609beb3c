"""The schedule dialog in a real headless Chromium: opened from a run's card and from the Models page, the
server's next runs following the form, refusals next to their field, and the schedule page it leads to
(Run now, the new run in the history, its point on the trend chart)."""

from __future__ import annotations

import re
from datetime import time

import pytest
from playwright.sync_api import expect

from ml_platform.schedules import scheduler, services
from ml_platform.schedules.models import ScheduleFiring
from ml_platform.training.models import TrainingRun

pytestmark = pytest.mark.browser


def open_dialog_from_the_card(page, project, run_id):
    page.goto(f"/projects/{project.id}/training/")
    page.locator(f"#run-{run_id} [data-action=schedule]").click()
    dialog = page.locator("#schedule-dialog")
    expect(dialog).to_be_visible()
    return dialog


def test_a_weekly_schedule_from_a_card_shows_its_next_runs_and_runs_now(
    logged_in_page, olivia, project, completed_run, screenshots
):
    page = logged_in_page(olivia)
    dialog = open_dialog_from_the_card(page, project, completed_run)
    dialog.locator("label.pill", has_text="Weekly").click()
    dialog.locator("label.pill", has_text="Wed").click()
    dialog.locator("input[name=schedule_time]").fill("09:00")
    dialog.locator("input[name=schedule_timezone]").fill("Europe/Warsaw")
    next_runs = dialog.locator("#schedule-next-runs")
    expect(next_runs).to_contain_text("Weekly on Wednesday at 09:00 (Europe/Warsaw)")
    expect(next_runs.locator("li")).to_have_count(5)
    expect(next_runs.locator("li").first).to_contain_text(re.compile(r"Wed \d{4}-\d\d-\d\d 09:00 CES?T"))
    screenshots("weekly-dialog")
    dialog.locator("#schedule-create").click()
    expect(page).to_have_url(re.compile(r"/schedules/\d+/$"))
    expect(page.locator("#schedule-kpis")).to_contain_text("Weekly on Wednesday at 09:00 (Europe/Warsaw)")

    page.locator("#trigger-now").click()
    row = page.locator("#schedule-history tbody tr[data-firing]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("by olivia")
    fired = ScheduleFiring.objects.get().run
    expect(row.locator(f"a[href='/training/runs/{fired.pk}/']")).to_have_text(str(fired))

    fired.transition(TrainingRun.RUNNING)
    fired.transition(TrainingRun.COMPLETED, blessed=True, final_metrics={"recall_at_10": 0.35})
    scheduler.settle()
    page.reload()
    expect(page.locator(f"#schedule-trend .point[data-run='{fired.pk}']")).to_have_count(1)
    screenshots("schedule-page")


def test_the_monthly_grid_marks_29_to_31_and_the_preview_names_skipped_months(
    logged_in_page, olivia, project, completed_run
):
    page = logged_in_page(olivia)
    dialog = open_dialog_from_the_card(page, project, completed_run)
    dialog.locator("label.pill", has_text="Monthly").click()
    expect(dialog.locator(".month-grid .may-skip")).to_have_count(3)
    dialog.locator(".month-grid label.day", has_text="31").click()
    expect(dialog.locator("#schedule-next-runs")).to_contain_text("are skipped")


def test_an_unknown_time_zone_is_refused_next_to_its_field(logged_in_page, olivia, project, completed_run):
    page = logged_in_page(olivia)
    dialog = open_dialog_from_the_card(page, project, completed_run)
    dialog.locator("input[name=schedule_timezone]").fill("Mars/Olympus")
    expect(dialog.locator("#schedule-next-runs")).to_contain_text("'Mars/Olympus' is not an IANA time zone")
    dialog.locator("#schedule-create").click()
    expect(dialog.locator("[data-errors-for=schedule_timezone]")).to_contain_text("not an IANA time zone")
    expect(dialog).to_be_visible()


def test_the_models_page_creates_a_schedule_and_then_links_to_it(
    logged_in_page, olivia, project, completed_run, screenshots
):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/models/")
    expect(page.locator("#models [data-role=schedule-status]")).to_have_text("None")
    page.locator("#models [data-action=create-schedule]").click()
    dialog = page.locator("#schedule-dialog")
    expect(dialog).to_contain_text("Creating schedule for model recs")
    dialog.locator("label.pill", has_text="Hourly").click()
    dialog.locator("label.pill", has_text=":30").click()
    expect(dialog.locator("#schedule-next-runs")).to_contain_text("Hourly at :30 (UTC)")
    screenshots("hourly-dialog")
    dialog.locator("#schedule-create").click()
    expect(page).to_have_url(re.compile(r"/schedules/\d+/$"))
    page.goto(f"/projects/{project.id}/models/")
    expect(page.locator("#models [data-role=schedule-status]")).to_have_text("Scheduled")
    expect(page.locator("#models .local-time")).to_contain_text("your time")
    expect(page.locator("#models [data-action=view-schedule]")).to_be_visible()


def test_the_schedule_page_adds_a_notification_edits_and_pauses(logged_in_page, olivia, completed_run, screenshots):
    run = TrainingRun.objects.get(pk=completed_run)
    schedule = services.create_from_run(
        run, olivia, services.ScheduleFields(name="nightly", schedule_type="daily", schedule_time=time(2, 30))
    )
    page = logged_in_page(olivia)
    page.goto(f"/schedules/{schedule.pk}/")
    form = page.locator("#notify-form")
    form.locator("input[name=address]").fill("ops@example.com")
    form.locator("label.pill", has_text="A run failed").click()
    form.locator("button[type=submit]").click()
    expect(page.locator("#schedule-notifications .targets")).to_contain_text("ops@example.com")
    page.wait_for_load_state()  # the page the form led to runs its scripts (htmx) before Edit is clicked
    page.locator("#edit-schedule").click()
    dialog = page.locator("#schedule-dialog")
    expect(dialog.locator("input[name=schedule_time]")).to_have_value("02:30")
    dialog.locator("input[name=schedule_time]").fill("03:45")
    expect(dialog.locator("#schedule-next-runs")).to_contain_text("Daily at 03:45 (UTC)")
    dialog.locator("#schedule-create").click()
    expect(page.locator("#schedule-kpis")).to_contain_text("Daily at 03:45 (UTC)")
    page.locator("#pause").click()
    expect(page.locator("#schedule-status")).to_have_text("Paused")
    expect(page.locator("#next-run")).to_have_text("—")
    screenshots("paused-schedule")


def test_the_wizards_train_now_then_schedule_opens_the_dialog_for_the_new_run(
    logged_in_page, olivia, project, dataset, feature_config, retrieval, screenshots
):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/training/")
    page.locator("#new-run").click()
    wizard = page.locator("#wizard-dialog")
    wizard.locator("select[name=dataset_id]").select_option(str(dataset["id"]))
    wizard.locator("select[name=feature_config_id]").select_option(str(feature_config["id"]))
    wizard.locator("select[name=model_config_id]").select_option(str(retrieval["id"]))
    wizard.locator("[data-next]").click()
    wizard.locator("input[name=name]").fill("weekly-recs")
    wizard.locator("label.check", has_text="Now, then schedule retraining").click()
    screenshots("wizard-when")
    wizard.locator("#wizard-submit").click()
    dialog = page.locator("#schedule-dialog")
    expect(dialog).to_be_visible()
    run = TrainingRun.objects.get(name="weekly-recs")
    expect(dialog.locator("input[name=source_training_run_id]")).to_have_value(str(run.pk))
    expect(wizard).to_be_hidden()
    screenshots("dialog-after-wizard")


def test_a_project_target_added_on_its_page_is_named_on_each_schedules_page(
    logged_in_page, olivia, completed_run, screenshots
):
    run = TrainingRun.objects.get(pk=completed_run)
    schedule = services.create_from_run(
        run, olivia, services.ScheduleFields(name="nightly", schedule_type="daily", schedule_time=time(2, 30))
    )
    page = logged_in_page(olivia)
    page.goto(f"/schedules/{schedule.pk}/")
    page.locator("#project-targets a", has_text="Project notifications").click()
    form = page.locator("#notify-form")
    form.locator("input[name=address]").fill("team@example.com")
    form.locator("label.pill", has_text="A new version was deployed").click()
    form.locator("button[type=submit]").click()
    expect(page.locator("#project-notifications .targets")).to_contain_text("team@example.com")
    expect(page.locator("#project-notifications")).to_contain_text("nightly")
    screenshots("project-notifications")
    page.locator("#project-notifications a", has_text="nightly").click()
    expect(page.locator("#project-targets")).to_contain_text("Also told, as for every schedule of")
    expect(page.locator("#project-targets")).to_contain_text("team@example.com")
