"""Drops (run, reward): review's (run, reward, id) serves every read it served.

Measured at 10M rollouts (docs/scaling.md): 32 bytes a row and one more index insert per
rollout. Dropped CONCURRENTLY, so a big table keeps taking writes meanwhile.
"""

from django.contrib.postgres.operations import RemoveIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("runs", "0002_metricpoint_run_no_db_constraint"),
        ("review", "0003_rollout_explorer_indexes"),  # the index that takes over
    ]

    operations = [
        RemoveIndexConcurrently(model_name="rollout", name="rollout_run_reward"),
    ]
