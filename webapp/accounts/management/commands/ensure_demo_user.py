from django.core.management.base import BaseCommand

from webapp.accounts.services import demo_user_ensure
from webapp.projects.services import personal_project


class Command(BaseCommand):
    help = "Create or reset the `demo` user and print its password."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default=None)

    def handle(self, *args, username: str, password: str | None, **options):
        user, password = demo_user_ensure(username=username, password=password)
        personal_project(user=user)
        self.stdout.write(password)
