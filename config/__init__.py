"""Server settings: environment variables (and ``*_FILE`` secrets) with local defaults."""

from config.settings import Settings, SettingsError, normalise_database_url

__all__ = ["Settings", "SettingsError", "normalise_database_url"]
