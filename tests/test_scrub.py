"""Secret/PII scrubbing: each rule on realistic examples, look-alikes that must survive."""

from __future__ import annotations

from pathlib import Path

import pytest

from echo.stages.scrub import TYPES, scrub_pair, scrub_text

# realistic-format but fake credentials (documentation examples or made up)
GH = "ghp_" + "x7Kq2LmN9pR4sT6vW8yZ1aB3cD5eF0gH2jK4"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi8bWy0TQ1e\n"
    "x4zH0jNxB7Q2sLqY8rV1cW9uT5pO3iK7aL6mN2bV4cX8zY==\n"
    "-----END RSA PRIVATE KEY-----"
)

CASES = [
    ("aws_access_key", 'AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"\n', "AKIAIOSFODNN7EXAMPLE"),
    (
        "aws_secret_key",
        'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    ("github_token", f'headers = {{"Authorization": "token {GH}"}}', GH),
    (
        "github_token",
        "GH_TOKEN=github_pat_11AAAAAAA0abcdefghijkl_mnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        "github_pat_11AAAAAAA0",
    ),
    (
        "slack_token",
        'client = WebClient(token="xoxb-2048213913-3104916324-Kz1Xyb2RtPq9")',
        "xoxb-2048",
    ),
    ("stripe_key", 'stripe.api_key = "sk_live_51H8xYzAbCdEfGhIjKlMnOp"', "sk_live_51H8"),
    (
        "openai_key",
        'client = OpenAI(api_key="sk-proj-4fG7hJ2kL9mN3pQ6rS8tV1wX5yZ0aB")',
        "sk-proj-4fG7",
    ),
    ("openai_key", "OPENAI_API_KEY=sk-T3BlbkFJ8x7Kq2LmN9pR4sT6vW8yZ1aB3cD5eF0gH", "sk-T3Blbk"),
    ("google_api_key", 'const KEY = "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe";', "AIzaSyDaGmW"),
    ("jwt", f'auth = "Bearer {JWT}"', JWT),
    ("private_key", f'KEY = """{PEM}"""\n', "MIIEpAIBAAKCAQEA"),
    (
        "password",
        'engine = create_engine("postgresql://app:Tr0ub4dor3@db.prod:5432/shop")',
        "Tr0ub4dor3",
    ),
    ("password", 'REDIS_URL = "redis://default:p4ssw0rd!x@cache:6379/0"', "p4ssw0rd!x"),
    ("password", 'conn = connect(host="db", password="hunter2-prod")', "hunter2-prod"),
    ("email", "# Maintainer: Jane Doe <jane.doe@acme-corp.io>", "jane.doe@acme-corp.io"),
    ("email", 'send_mail(to="ops+alerts@mail.company.co.uk")', "ops+alerts@mail.company.co.uk"),
]


@pytest.mark.parametrize(
    ("kind", "text", "secret"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_rule_replaces_secret_with_typed_placeholder(kind: str, text: str, secret: str) -> None:
    out, counts = scrub_text(text)
    assert out is not None
    assert secret not in out
    placeholder = "<EMAIL>" if kind == "email" else f"<SECRET:{kind}>"
    assert placeholder in out
    assert counts == {kind: 1}


def test_password_in_connection_string_keeps_scheme_user_and_host() -> None:
    out, _ = scrub_text("mysql://admin:S3cret!@10.0.0.5:3306/db")
    assert out == "mysql://admin:<SECRET:password>@10.0.0.5:3306/db"


def test_private_key_block_is_removed_whole_and_following_code_survives() -> None:
    out, _ = scrub_text(f"{PEM}\nprint('done')\n")
    assert out == "<SECRET:private_key>\nprint('done')\n"


def test_private_key_cut_off_before_its_end_line_is_removed_to_the_end() -> None:
    out, counts = scrub_text(
        "key = '''-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA"
    )
    assert out == "key = '''<SECRET:private_key>"
    assert counts == {"private_key": 1}


#: Every rule, with texts that look like what it matches but are legitimate code and must
#: survive unchanged (docs/pairs.md, "Look-alikes kept", lists the same table).
LOOK_ALIKES_BY_RULE: dict[str, list[str]] = {
    "private_key": [
        'if line.strip() == "-----BEGIN RSA PRIVATE KEY-----":\n    in_key = True\n',
        'PEM_HEADER = "-----BEGIN PRIVATE KEY-----"\nPEM_FOOTER = "-----END PRIVATE KEY-----"\n',
        'assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----\\n")',
        'KEY_RE = re.compile(r"-----BEGIN RSA PRIVATE KEY-----\\n(.*?)\\n-----END RSA PRIVATE KEY-----", re.S)',
        "# a key file starts with -----BEGIN OPENSSH PRIVATE KEY----- and ends with its END line",
        "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----\nPrivateKeyParserImplementation(data)\n",
        "                -----END RSA PRIVATE KEY-----\n",
        "-----BEGIN RSA PRIVATE KEY-----",
    ],
    "aws_access_key": [
        "# AKIA is the prefix of AWS access key ids; never commit one",
        "AKIA_PREFIX = 'AKIA'",
        'ARN_PART = "AKIAIOSFODNN7EXAMPLE1234"  # longer than a key id',
    ],
    "aws_secret_key": [
        'aws_secret_access_key = os.environ["AWS_SECRET_ACCESS_KEY"]',
        'COMMIT = "9fceb02d0ae598e95dc970b74767f19372d61af8"',
    ],
    "github_token": [
        "ghp_ = 1  # a variable named like a token prefix",
        'PREFIXES = ("ghp_", "gho_", "github_pat_")',
    ],
    "slack_token": [
        'TOKEN_PREFIXES = ("xoxb-", "xoxp-")',
        "# xoxb-tokens are bot tokens",
    ],
    "slack_webhook": [
        'BASE = "https://hooks.slack.com/services/"',
        'url = "https://hooks.slack.com/services/T000/B000/XXXX"  # docs placeholder',
    ],
    "stripe_key": [
        'stripe.api_key = os.environ["STRIPE_SECRET_KEY"]',
        'LIVE_PREFIX = "sk_live_"',
    ],
    "openai_key": [
        "import sklearn  # sk-learn is scikit-learn",
        'css = "sk-button-primary sk-layout"',
        'pipeline = "sk-learn-preprocessing-pipeline-helpers"',
    ],
    "google_api_key": [
        'PREFIX = "AIza"',
        'key = "AIzaShort123"',
    ],
    "jwt": [
        'token = "<eos>"',
        'header = "eyJhbGciOiJIUzI1NiJ9"  # one part is not a token',
    ],
    "password": [
        'password = os.environ["DB_PASSWORD"]',
        'password = ""',
        "if password == confirm:",
        'url = "https://user@host.internal/path"  # user info only, no password',
        'url = "https://api.github.com/repos/acme/shop"',
        'DSN = "postgresql://db.prod:5432/shop"',
    ],
    "email": [
        "pip install 'requests==2.31.0'  # pinned: tool@v1.2.3 and lodash@latest",
        "npm install @types/node@20.1.0",
        '@app.route("/users/<int:user_id>")\ndef show(user_id):',
        "@pytest.fixture(scope='session')",
        "git remote add origin git@github.com:acme/shop.git",
        "ssh deploy@localhost 'systemctl restart app'",
        "x = a@b  # matrix product",
    ],
    # no rule matches on entropy alone: hashes, ids and test data are code
    "high_entropy": [
        'digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"',
        'uuid = "123e4567-e89b-12d3-a456-426614174000"',
        'DATA = "SGVsbG8sIFdvcmxkIQ=="  # base64 test data',
    ],
}
LOOK_ALIKES = [(rule, text) for rule, texts in LOOK_ALIKES_BY_RULE.items() for text in texts]


@pytest.mark.parametrize(
    ("rule", "text"), LOOK_ALIKES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(LOOK_ALIKES)]
)
def test_look_alike_survives_unchanged(rule: str, text: str) -> None:
    out, counts = scrub_text(text)
    assert out == text
    assert not counts


def test_every_rule_has_look_alikes_and_a_row_in_the_docs() -> None:
    assert set(TYPES) <= set(LOOK_ALIKES_BY_RULE)
    docs = (Path(__file__).resolve().parents[1] / "docs" / "pairs.md").read_text(encoding="utf-8")
    table = docs[docs.index("### Look-alikes kept") :]
    for rule in LOOK_ALIKES_BY_RULE:
        assert f"| `{rule}` |" in table, rule


def test_bare_pem_header_survives_but_the_key_block_after_it_does_not() -> None:
    text = f'HEADER = "-----BEGIN RSA PRIVATE KEY-----"\nKEY = """{PEM}"""\n'
    out, counts = scrub_text(text)
    assert out == 'HEADER = "-----BEGIN RSA PRIVATE KEY-----"\nKEY = """<SECRET:private_key>"""\n'
    assert counts == {"private_key": 1}


@pytest.mark.parametrize(
    "key",
    [
        PEM.replace("\n", "\\n"),  # inside a one-line string literal, "\n" escapes
        PEM.replace("-----\nMIIE", "-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\nMIIE"),
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\nlQOYBFxyz0123abcdEFGHijklmnop\n=abcd\n"
        "-----END PGP PRIVATE KEY BLOCK-----",
    ],
    ids=["escaped-newlines", "encrypted-pem-headers", "pgp-block"],
)
def test_private_key_block_forms_are_removed_whole(key: str) -> None:
    out, counts = scrub_text(f"KEY = '{key}'\nok = 1\n")
    assert out == "KEY = '<SECRET:private_key>'\nok = 1\n"
    assert counts == {"private_key": 1}


def test_private_key_body_cut_before_the_text_is_removed_up_to_its_end_line() -> None:
    body = PEM.split("\n", 1)[1]  # the BEGIN line lies in the text before this one
    out, counts = scrub_text(f"{body}\nrest()\n")
    assert out == "<SECRET:private_key>\nrest()\n"
    assert counts == {"private_key": 1}


def test_counts_are_per_type() -> None:
    text = 'a = "AKIAIOSFODNN7EXAMPLE"\nb = "AKIAI44QH8DHBEXAMPLE"\n# bob@acme-corp.io\n'
    _, counts = scrub_text(text)
    assert counts == {"aws_access_key": 2, "email": 1}


def test_every_type_has_a_case() -> None:
    assert {c[0] for c in CASES} | {"slack_webhook"} == set(TYPES)


def test_slack_webhook_url_is_scrubbed() -> None:
    url = "https://hooks.slack.com/services/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"
    out, counts = scrub_text(f"requests.post('{url}', json=msg)")
    assert out == "requests.post('<SECRET:slack_webhook>', json=msg)"
    assert counts == {"slack_webhook": 1}


def test_pair_secret_split_by_the_cursor_is_redacted_on_both_sides() -> None:
    r = scrub_pair(
        'key_id = "AKIAIOSF', '"\nclient = boto3.client("s3")\n', "ODNN7EXAMPLE", "ODNN7EXAMPLE"
    )
    assert r.prefix == 'key_id = "<SECRET:aws_access_key>'
    assert r.final_text == "<SECRET:aws_access_key>"
    assert r.proposal == "<SECRET:aws_access_key>"
    assert r.suffix == '"\nclient = boto3.client("s3")\n'


def test_pair_secret_wholly_in_prefix_counts_once() -> None:
    r = scrub_pair('email = "ann@acme-corp.io"\n', None, "x = 1", "x = 2")
    assert r.prefix == 'email = "<EMAIL>"\n'
    assert r.counts == {"email": 1}
    assert r.suffix is None
