"""Keep `Tag.usage_count` true whichever way an image tag goes away or comes in one by one
(admin inlines, deleting an image, a cascade); bulk paths recount themselves."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from tagsite.models import ImageTag
from tagsite.services.tags import refresh_usage_counts


@receiver(post_save, sender=ImageTag, dispatch_uid="tagsite.count_on_save")
@receiver(post_delete, sender=ImageTag, dispatch_uid="tagsite.count_on_delete")
def recount_tag(sender, instance: ImageTag, **kwargs) -> None:
    refresh_usage_counts([instance.tag_id])
