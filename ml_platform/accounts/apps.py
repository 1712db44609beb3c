from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "ml_platform.accounts"
    label = "accounts"
