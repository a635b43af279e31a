"""The toolkit's icon: every page links it, and /favicon.ico (what browsers ask of the API's JSON and its docs, which
link none) leads to it, so no request for an icon ends in a 404."""
import re

import pytest

pytestmark = pytest.mark.django_db


def test_favicon_ico_leads_to_the_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code in (301, 302), response.status_code
    icon = client.get(response["Location"])
    assert icon.status_code == 200 and icon["Content-Type"].startswith("image/svg+xml")
    assert b"<svg" in b"".join(icon.streaming_content if icon.streaming else [icon.content])
    assert client.get("/favicon.ico", follow=True).status_code == 200


@pytest.mark.parametrize("page", ["/accounts/login/", "/zoo/"])
def test_pages_link_an_icon_that_is_served(client, user, page):
    client.force_login(user)
    html = client.get(page).content.decode()
    link = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', html)
    assert link, "the page links no icon"
    assert client.get(link.group(1)).status_code == 200
    assert client.get("/favicon.ico")["Location"] == link.group(1), "one icon, whichever way it is asked for"
