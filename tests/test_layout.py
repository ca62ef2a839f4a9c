"""portal.web.layout: every table of a page scrolls inside its own box (issue 14, phones)."""

from __future__ import annotations

from portal.web.layout import scrolling_tables


def test_each_table_is_wrapped_once_and_the_rest_is_kept():
    html = "<p>a</p><table><tr><td>1</td></tr></table><p>b</p><table><tr><td>2</td></tr></table>"
    out = str(scrolling_tables(html))
    assert out.count('<div class="table-scroll"') == 2
    assert out.startswith("<p>a</p><div") and "</table></div><p>b</p>" in out


def test_a_box_takes_the_focus_only_when_its_table_holds_nothing_focusable():
    plain = str(scrolling_tables("<table><tr><td>1</td></tr></table>"))
    linked = str(scrolling_tables('<table><tr><td><a href="/x">x</a></td></tr></table>'))
    hidden_only = str(
        scrolling_tables('<table><tr><td><input type="hidden" name="a"></td></tr></table>')
    )
    assert 'tabindex="0"' in plain
    assert "tabindex" not in linked
    assert 'tabindex="0"' in hidden_only  # a hidden field cannot take the focus


def test_a_nested_table_stays_inside_its_outer_box():
    out = str(
        scrolling_tables("<table><tr><td><table><tr><td>1</td></tr></table></td></tr></table>")
    )
    assert out.count("table-scroll") == 1 and out.endswith("</table></td></tr></table></div>")


def test_an_unclosed_table_is_left_as_it_was():
    assert str(scrolling_tables("<p>x</p><table><tr><td>1")) == "<p>x</p><table><tr><td>1"


def test_a_page_shows_its_tables_in_boxes(app, signed_in):
    client = signed_in("council_admin")
    page = client.get("/council/organisations").get_data(as_text=True)
    assert '<div class="table-scroll"' in page and "<table" in page
    assert page.count("<table") == page.count('class="table-scroll"')
