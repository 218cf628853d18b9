"""The built-in prompt profiles (seed 003: one per catalogue style). Created by a migration, editable in admin;
`ensure_builtin_profiles` brings back one that was deleted."""

BUILTIN_PROFILES: dict[str, dict] = {
    "default": {
        "description": "Neutral metadata for a general photo library.",
        "title_prompt": "Give the photo a short, specific title (at most 8 words, no quotes, no trailing period).",
        "caption_prompt": "Write one sentence saying what the photo shows: the main subject, what it does, where.",
        "keywords_prompt": (
            "List keywords a person would search this photo by: subjects, objects, setting, colours, mood. "
            "Single words or short phrases, most important first, no duplicates."
        ),
        "description_prompt": (
            "Describe the photo in 2 to 4 sentences: subject, setting, light, composition and anything notable. "
            "Describe only what is visible."
        ),
        "max_keywords": 15,
        "tone": "neutral",
    },
    "travel": {
        "description": "Travel and landscape photography: places, landmarks, season and light.",
        "title_prompt": "Give a short travel-catalogue title naming the kind of place (at most 8 words, no quotes).",
        "caption_prompt": "One sentence for a travel catalogue: the place, the landmark or landscape, the moment.",
        "keywords_prompt": (
            "Keywords for a travel library: kind of place, landmark type, landscape, weather, season, time of day, "
            "activities. Most important first, no duplicates."
        ),
        "description_prompt": (
            "Describe the scene for a travel catalogue in 2 to 4 sentences: the place, its atmosphere, the light "
            "and season. Do not invent place names that are not visible."
        ),
        "max_keywords": 20,
        "tone": "warm, evocative",
    },
    "studio": {
        "description": "Studio and product photography: subject, lighting set-up, background.",
        "title_prompt": "Give a precise studio title: the subject and the shot type (at most 8 words, no quotes).",
        "caption_prompt": "One sentence: the subject, the shot type and the background.",
        "keywords_prompt": (
            "Keywords for a studio library: subject, product or person type, shot type, lighting, background, "
            "colours, props. Most important first, no duplicates."
        ),
        "description_prompt": (
            "Describe the photograph technically in 2 to 4 sentences: subject, pose or arrangement, lighting "
            "(key, fill, rim), background and colour palette."
        ),
        "max_keywords": 15,
        "tone": "technical, precise",
    },
    "booru": {
        "description": "Danbooru-style tags for illustrations and anime art.",
        "title_prompt": "Give a short title for the illustration (at most 8 words, no quotes).",
        "caption_prompt": "One sentence saying who or what is drawn and what they do.",
        "keywords_prompt": (
            "List Danbooru-style tags: lower case, words joined by underscores (long_hair, looking_at_viewer, "
            "1girl, outdoors). Character count, hair, eyes, clothing, pose, expression, background. No ratings."
        ),
        "description_prompt": "Describe the illustration in 2 to 3 sentences: characters, clothing, pose, background.",
        "max_keywords": 30,
        "tone": "terse",
    },
}


def ensure_builtin_profiles(model=None) -> None:
    """Create the built-in profiles that do not exist (a migration passes its historical model)."""
    if model is None:
        from suggestions.models import PromptProfile as model
    for name, fields in BUILTIN_PROFILES.items():
        if not model.objects.filter(name=name).exists():
            model.objects.create(name=name, builtin=True, **fields)
