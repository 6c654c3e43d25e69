from tests.web.helpers import sign_in


def test_tmp(client, demo):
    r = sign_in(client, "admin@us-partner.example")
    assert r.status_code == 303, r.get_data(as_text=True)
    page = client.get("/partner/").get_data(as_text=True)
    assert "Jordan Rivera" in page and "Kölner" not in page
