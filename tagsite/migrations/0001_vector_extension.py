from django.db import migrations
from pgvector.django import VectorExtension


class Migration(migrations.Migration):
    """pgvector first: tag embeddings and nearest-neighbour lookups rely on it."""

    initial = True
    dependencies = []
    operations = [VectorExtension()]
