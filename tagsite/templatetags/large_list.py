"""`{% large_result_list cl %}`: Django's `{% result_list %}` for LargeListAdmin changelists, with the same HTML.

Django's `items_for_result` works out each cell from scratch: the column's field, its CSS classes, whether it
links, the empty value, a choice field's choices as a new dict, then `format_html` (about 10 µs a cell, 5 ms for
a page of 50 rows and 10 columns, and the template renders every cell again as a variable). Here each column's
plan is made once per page and a row is one string of its cells. Lists with editable fields, popups or a
`to_field` (never at scale) are left to Django."""

import datetime
import html

from django import template
from django.contrib.admin.templatetags.admin_list import (
    ResultList,
    _coerce_field_name,
    result_headers,
    result_hidden_fields,
)
from django.contrib.admin.templatetags.admin_list import result_list as django_result_list
from django.contrib.admin.templatetags.base import InclusionAdminNode
from django.contrib.admin.utils import (
    FieldIsAForeignKeyColumnName,
    _get_non_gfk_field,
    display_for_field,
    display_for_value,
    lookup_field,
)
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db import models
from django.utils import numberformat
from django.utils.formats import get_format
from django.utils.functional import Promise
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe
from django.utils.translation import get_language

register = template.Library()

DATE_OR_TIME = (datetime.date, datetime.time)


def escape(value) -> str:
    """`conditional_escape` without its lazy-string wrapper (a tenth of a page's rows): safe strings as they are,
    anything else as escaped text."""
    if isinstance(value, Promise):
        value = str(value)
    if hasattr(value, "__html__"):
        return value.__html__()
    return html.escape(str(value))


def blank_to_empty(value):
    return "" if isinstance(value, str) and value.strip() == "" else value


def number_formatter():
    """`formats.number_format` with the current language's separators and grouping read once (a page's numbers
    share them), not three format lookups a cell."""
    lang = get_language()
    decimal_separator = get_format("DECIMAL_SEPARATOR", lang, use_l10n=True)
    grouping = get_format("NUMBER_GROUPING", lang, use_l10n=True)
    thousand_separator = get_format("THOUSAND_SEPARATOR", lang, use_l10n=True)

    def number(value):
        return numberformat.format(value, decimal_separator, None, grouping, thousand_separator, use_l10n=True)

    return number


def column_cell(cl, field_index, field_name, link, empty):
    """A function of a row's object giving the column's cell content and its classes (as Django's
    `items_for_result` would), planned once for the column."""
    model_admin = cl.model_admin
    name = _coerce_field_name(field_name, field_index)
    classes = f"field-{name}"
    try:
        field = _get_non_gfk_field(cl.lookup_opts, field_name)
    except (FieldDoesNotExist, FieldIsAForeignKeyColumnName):
        field = None
    if field is None and (callable(field_name) or (hasattr(model_admin, field_name) and field_name != "__str__")):
        attr = field_name if callable(field_name) else getattr(model_admin, field_name)
        own_empty = getattr(attr, "empty_value_display", empty)
        boolean = getattr(attr, "boolean", False)
        shown = "action-checkbox" if field_name == "action_checkbox" else classes

        def method_cell(obj):
            try:
                value = blank_to_empty(attr(obj))
            except ObjectDoesNotExist:
                return empty, classes
            nowrap = isinstance(value, DATE_OR_TIME)
            return display_for_value(value, own_empty, boolean), f"{shown} nowrap" if nowrap else shown

        return method_cell
    model_attr = getattr(cl.model, field_name, None) if isinstance(field_name, str) else None
    if field is None and isinstance(model_attr, property) and field_name != "__str__":  # lookup_field's way
        boolean = getattr(model_attr.fget, "boolean", False)

        def property_cell(obj):
            try:
                value = getattr(obj, field_name)
                value = blank_to_empty(value() if callable(value) else value)
            except ObjectDoesNotExist:
                return empty, classes
            nowrap = isinstance(value, DATE_OR_TIME)
            return display_for_value(value, empty, boolean), f"{classes} nowrap" if nowrap else classes

        return property_cell
    if field is None:  # a model attribute or a related lookup: Django's lookup per row

        def generic_cell(obj):
            return django_cell(cl, obj, field_name, classes, link, empty)

        return generic_cell
    if field.auto_created:

        def auto_cell(obj):
            value = blank_to_empty(getattr(obj, field_name))
            nowrap = isinstance(value, DATE_OR_TIME)
            return display_for_value(value, empty, False), f"{classes} nowrap" if nowrap else classes

        return auto_cell
    if isinstance(field, (models.DateField, models.TimeField, models.ForeignKey)):
        classes += " nowrap"
    if isinstance(field.remote_field, models.ManyToOneRel):

        def related_cell(obj):
            try:
                related = getattr(obj, field.name)
            except ObjectDoesNotExist:
                return empty, f"field-{name}"
            return (empty if related is None else related), classes

        return related_cell
    choices = getattr(field, "flatchoices", None)
    if choices:
        try:
            labels = dict(choices)
        except TypeError:  # list-like choices: Django's own handling
            labels = None
        if labels is not None:

            def choice_cell(obj):
                value = blank_to_empty(getattr(obj, field_name))
                try:
                    return labels.get(value, empty), classes
                except TypeError:
                    return display_for_field(value, field, empty, avoid_link=link), classes

            return choice_cell
    if not choices and isinstance(field, (models.IntegerField, models.FloatField)):
        number = number_formatter()  # not a DecimalField (its places) nor a BooleanField (its icon)
        empty_values = field.empty_values

        def number_cell(obj):
            value = blank_to_empty(getattr(obj, field_name))
            return (empty if value in empty_values else number(value)), classes

        return number_cell
    if not choices and type(field) in (models.CharField, models.TextField):  # not a URL, file or JSON field

        def text_cell(obj):
            value = blank_to_empty(getattr(obj, field_name))
            return (empty if value in field.empty_values else display_for_value(value, empty)), classes

        return text_cell

    def field_cell(obj):
        return display_for_field(blank_to_empty(getattr(obj, field_name)), field, empty, avoid_link=link), classes

    return field_cell


def django_cell(cl, obj, field_name, classes, link, empty):
    """Django's `items_for_result` for one cell whose column is neither a field nor an admin method."""
    try:
        f, attr, value = lookup_field(field_name, obj, cl.model_admin)
    except ObjectDoesNotExist:
        return empty, classes
    empty = getattr(attr, "empty_value_display", empty)
    value = blank_to_empty(value)
    boolean = getattr(attr, "boolean", False)
    if isinstance(attr, property) and hasattr(attr, "fget"):
        boolean = getattr(attr.fget, "boolean", False)
    shown = display_for_value(value, empty, boolean)
    return shown, f"{classes} nowrap" if isinstance(value, DATE_OR_TIME) else classes


def row_renderer(cl):
    """A function of a row's object giving its cells as one safe string."""
    empty = cl.model_admin.get_empty_value_display()
    links = cl.list_display_links
    columns = []
    first = True
    for field_index, field_name in enumerate(cl.list_display):
        if links is None:
            link = False
        else:
            link = (first and not links) or field_name in links
        tag = ("th" if first else "td") if link else "td"
        if link:
            first = False
        columns.append((column_cell(cl, field_index, field_name, link, empty), tag, link))

    def render(obj):
        cells = []
        for cell, tag, link in columns:
            shown, classes = cell(obj)
            shown = escape(shown)
            if link:
                shown = f'<a href="{escape(cl.url_for_result(obj))}">{shown}</a>'
            cells.append(f'<{tag} class="{classes}">{shown}</{tag}>')
        return mark_safe("".join(cells))

    return render


def large_result_list(cl):
    """Django's `result_list` context, with each row one string (the template joins a row's items)."""
    if cl.formset or cl.is_popup or cl.to_field or cl.preserved_filters:
        return django_result_list(cl)
    headers = list(result_headers(cl))
    render = row_renderer(cl)
    results = [ResultList(None, [render(obj)]) for obj in cl.result_list]
    return {
        "cl": cl,
        "result_hidden_fields": list(result_hidden_fields(cl)),
        "result_headers": headers,
        "num_sorted_fields": sum(1 for header in headers if header["sortable"] and header["sorted"]),
        "results": results,
        # the rows as Django's template loop writes them (no form errors: no list_editable here)
        "rows": mark_safe("".join(f"\n\n<tr>{row}</tr>\n" for (row,) in results)),
    }


@register.tag(name="large_result_list")
def large_result_list_tag(parser, token):
    return InclusionAdminNode(
        parser, token, func=large_result_list, template_name="large_change_list_results.html", takes_context=False
    )


_action_forms: dict[tuple, str] = {}


def action_form_html(form) -> str:
    """The action form's fields as Django's admin/actions.html writes them; an unbound form's HTML is kept per
    form class, language and choices (the select rendered through the widget templates was about 1 ms a page)."""
    key = None
    if not form.is_bound:
        fields = form.fields.items()
        key = (
            type(form),
            get_language(),
            form.auto_id,
            form.prefix,
            tuple((name, repr(getattr(field, "choices", None)), repr(field.initial)) for name, field in fields),
        )
        if key in _action_forms:
            return _action_forms[key]
    parts = []
    for field in form:
        parts.append(f"<label>{conditional_escape(field.label)} {field}</label>" if field.label else str(field))
    shown = mark_safe("".join(parts))
    if key is not None:
        if len(_action_forms) > 256:
            _action_forms.clear()
        _action_forms[key] = shown
    return shown


def large_admin_actions(context):
    """Django's `admin_actions` with the form's fields written by `action_form_html`."""
    context["action_index"] = context.get("action_index", -1) + 1
    context["action_form_html"] = action_form_html(context["action_form"])
    return context


@register.tag(name="large_admin_actions")
def large_admin_actions_tag(parser, token):
    return InclusionAdminNode(parser, token, func=large_admin_actions, template_name="large_actions.html")
