"""The settings and results columns, now in TrainingRun.spec / results (0007 copied them); apart from
0007 so that PostgreSQL alters the table in a transaction of its own, after the rows were updated."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("runs", "0007_training_spec"),
    ]

    operations = [
        migrations.RemoveField(
            model_name='trainingrun',
            name='architecture',
        ),
        migrations.RemoveField(
            model_name='trainingrun',
            name='balancing',
        ),
        migrations.RemoveField(
            model_name='trainingrun',
            name='batch_size',
        ),
        migrations.RemoveField(
            model_name='trainingrun',
            name='class_factors',
        ),
        migrations.RemoveField(
            model_name='trainingrun',
            name='config',
        ),
        migrations.RemoveField(
            model_name='trainingrun',
            name='device',
        ),
        migrations.RemoveField(
            model_name='trainingrun',
            name='epochs',
        ),
        migrations.RemoveField(
            model_name='trainingrun',
            name='learning_rate',
        ),
        migrations.RemoveField(
            model_name='trainingrun',
            name='processes',
        ),
        migrations.RemoveField(
            model_name='trainingrun',
            name='seed',
        ),
        migrations.RemoveField(
            model_name='trainingrun',
            name='test_accuracy',
        ),
        migrations.RemoveField(
            model_name='trainingrun',
            name='test_loss',
        ),
    ]
