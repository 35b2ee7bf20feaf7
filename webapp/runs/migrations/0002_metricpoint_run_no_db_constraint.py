"""Metric points lose their database foreign key: its per-row check was a third of the
cost of storing a point (docs/scaling.md). `ingest.metrics_store` locks the run row once
per batch instead; Django still cascades deletes."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='metricpoint',
            name='run',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='runs.run'),
        ),
    ]
