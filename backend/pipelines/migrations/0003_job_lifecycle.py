"""Tables of measures share the one job lifecycle (backend.core.models.Job): their worker is `worker`."""
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("pipelines", "0002_aggregations")]

    operations = [
        migrations.RenameField("aggregation", "claimed_by", "worker"),
        migrations.AddField(
            model_name='aggregation',
            name='attempts',
            field=models.PositiveSmallIntegerField(default=0, help_text='How many times a worker has started this job.'),
        ),
        migrations.AddField(
            model_name='aggregation',
            name='progress_message',
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name='aggregation',
            name='started_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='aggregation',
            name='heartbeat_at',
            field=models.DateTimeField(blank=True, help_text='When its worker last said it was alive.', null=True),
        ),
        migrations.AlterField(
            model_name='aggregation',
            name='status',
            field=models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('ready', 'Ready'), ('failed', 'Failed'), ('stopped', 'Stopped')], db_index=True, default='queued', max_length=20),
        ),
        migrations.AlterField(
            model_name='aggregation',
            name='worker',
            field=models.CharField(blank=True, help_text='The worker that runs (or ran) the job.', max_length=255),
        ),
    ]
