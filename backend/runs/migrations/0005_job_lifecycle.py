"""Runs share the one job lifecycle (backend.core.models.Job): 'stopping' is 'running' with stop_requested set."""
from django.db import migrations, models



def stopping_is_running(apps, schema_editor):
    apps.get_model("runs", "TrainingRun").objects.filter(status="stopping").update(status="running", stop_requested=True)


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0004_training_processes'),
    ]

    operations = [
        migrations.AddField(
            model_name='trainingrun',
            name='attempts',
            field=models.PositiveSmallIntegerField(default=0, help_text='How many times a worker has started this job.'),
        ),
        migrations.AddField(
            model_name='trainingrun',
            name='heartbeat_at',
            field=models.DateTimeField(blank=True, help_text='When its worker last said it was alive.', null=True),
        ),
        migrations.AlterField(
            model_name='trainingrun',
            name='status',
            field=models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('stopped', 'Stopped')], db_index=True, default='queued', max_length=20),
        ),
        migrations.AlterField(
            model_name='trainingrun',
            name='worker',
            field=models.CharField(blank=True, help_text='The worker that runs (or ran) the job.', max_length=255),
        ),
        migrations.RunPython(stopping_is_running, migrations.RunPython.noop),
    ]
