"""Short alias of `llm_auto_categorize_tags`."""

from categorization.management.commands.llm_auto_categorize_tags import Command as LLMAutoCategorizeCommand


class Command(LLMAutoCategorizeCommand):
    help = "Alias of llm_auto_categorize_tags: " + LLMAutoCategorizeCommand.help
