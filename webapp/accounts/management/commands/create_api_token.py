from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from webapp.accounts.models import Scope
from webapp.accounts.services import MAX_EXPIRY_DAYS, api_token_create


class Command(BaseCommand):
    help = "Print a new API token for an existing user (one line, nothing else on stdout)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label to recognise the token by.")
        parser.add_argument("--scope", default=Scope.FULL, choices=Scope.values,
                            help="full (default): all its user may do; ingest: log external runs and read.")
        parser.add_argument("--expires-days", type=int, default=None,
                            help=f"Refused after this many days (1-{MAX_EXPIRY_DAYS}); default: never expires.")

    def handle(self, *args, username: str, name: str, scope: str, expires_days: int | None, **options):
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"no user named {username!r}") from None
        try:
            raw = api_token_create(user=user, name=name, scope=scope, expires_in_days=expires_days)
        except ValidationError as exc:
            raise CommandError("; ".join(f"--{f.replace('_in_', '-').replace('_', '-')}: {m}"
                                         for f, ms in exc.message_dict.items() for m in ms)) from None
        self.stdout.write(raw)
