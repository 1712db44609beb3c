"""The personal API tokens page."""

from django.urls import path

from ml_platform.accounts import pages

urlpatterns = [path("tokens/", pages.tokens_page, name="tokens")]
