import time
from tests.web.helpers import sign_in, csrf_token


def test_probe(client, app):
    t = time.perf_counter()
    from app.extensions import gateway, session_scope
    from app.services.demo import seed_demo

    with app.app_context(), session_scope() as session:
        seed_demo(session, gateway())
    print("seed", time.perf_counter() - t)
    for nxt in [
        "/\\evil.example",
        "//evil.example",
        "https://evil.example/",
        "/\t/evil.example",
        "/partner/customers/1",
    ]:
        client.post("/logout", headers={"X-CSRFToken": csrf_token(client)})
        tok = csrf_token(client)
        r = client.post(
            "/login",
            query_string={"next": nxt},
            data={
                "email": "admin@us-partner.example",
                "password": "portico-demo",
                "csrf_token": tok,
            },
        )
        print(repr(nxt), r.status_code, repr(r.headers.get("Location")))
    r = client.get("/partner/?q=jordan", headers={"HX-Request": "true"})
    print(r.status_code, r.headers.get("Vary"), r.get_data(as_text=True)[:300])
