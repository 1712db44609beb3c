from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "ml_platform.audit"
    label = "audit"
    verbose_name = "Audit trail"
