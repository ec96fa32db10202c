"""stream.secrets: what it finds, where, what redaction leaves, and that the prefilter loses nothing.

Every credential below is made up (random characters in the shape of the real thing).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import multiprocessing
import shlex
import shutil
import sysconfig
import textwrap
import threading
import urllib.parse
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest

from stream.secrets import EXCLUDED_PLUGINS, KINDS, Hit, SecretScanner
from stream.secrets.detectors import load as _load
from stream.secrets.spans import spans as _spans

FIXTURE = Path(__file__).parent / "fixtures" / "polyglot" / "config_loader.py"

AWS_KEY_ID = "AKIAVQJXXVBOTHD0WTFL"
AWS_SECRET = "pdzPaEMM1ZA7V0FhHVJWDBt2hWdQZUm14QhoxhLP"
GITHUB = "ghp_SnH6av1Ib8pp1xxXHU0BScJXj675eVq30XYq"
SLACK = "xoxb-490807516561-4053235269159-u1rfc048ttp08kftt6ol1yxm"
PASSWORD = "Tr0ub4dor&3horse"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkFkYSIsImlhdCI6MTcxNjIzOTAyMn0"
    ".QHPCc0pRzUSPzAO9lACnEWi45zA4hIXnff8aRWqecf4"
)
BLOB = "aBcnwDDOOAZvw6d3eK3pxFkhJA5uFyeUhwksU8dS"  # 40 random base64 characters
PEM_BODY = [
    "MIIEpAIBAAKCAQEA5+7nYV7zXzDkm0guFcrnUAcgHhJhew/tp+Fkd5b/AivqjtAq",
    "gqF1kw8jN803lMUiCABtaxrwwMvWJWWKrCyfqgfRPER+MwUe7vlaYOVhQ9bEO8rX",
    "bACKmwprX8kzFUpt4oQEqJfFJSYuanwHvL7oQfdFxV1On3R/YVFkxvco1xg1NxOC",
    "esiD1/uWWSNAdPUlj2xoCCOJ0uR/HhdakLxDL7lG5qlHEQnzt58RCib2Ip+jRSUm",
    "57wWQq60K/In1Q//B8PCBiQpLjuD1anG6uHsKg+eLPYLdTn++IIFvJpJZ1av4v97",
    "p8+AZdxmbcRwomtFRP6zFCCNVjnm8Yxt08P8oeekJhCOFY+1nglFz+hhDIh5SBg7",
    "5De8J2Vm84NbBfESW3OLsVHJcizSxkLm",
]

# One line per kind (two for Slack and AWS), each a Python statement; used for detection, idempotence and the
# prefilter proof.
POSITIVES: dict[str, list[str]] = {
    "aws_access_key": [f'aws_access_key_id = "{AWS_KEY_ID}"', f'aws_secret_access_key = "{AWS_SECRET}"'],
    "github_token": [f'token = "{GITHUB}"'],
    "gitlab_token": ['gl = "glpat-b6HrlEOS47WgjKCu-0xx"'],
    "slack_token": [
        f'SLACK = "{SLACK}"',
        'hook = "https://hooks.slack.com/services/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"',
    ],
    "openai_key": ['client = OpenAI(api_key="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")'],
    "stripe_key": ['stripe.api_key = "sk_live_xni7z9KwRkNr4aE28uz5eRTp"'],
    "sendgrid_key": ['sg = "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"'],
    "pypi_token": [
        'tok = "pypi-AgEIcHlwaS5vcmcy4SXvE9rwLbAtf6e9cpCGybY9lMR4pAwBp3GVy1PixOqoRGrB5Vpg5C6QsyHZytfqY6K1Qjah4dXd3eO"'
    ],
    "npm_token": ['NPMRC = "//registry.npmjs.org/:_authToken=npm_aA5zbWVb2FaCo7du45pKcP753ivdSmDrUd7z"'],
    "twilio_key": ['sid = "ACcuu1fgm1hd8035bxt1etsh6dhiwn6kvx"'],
    "mailchimp_key": ['mc = "hv04hexczyr4vmkb86w04nkth169dxnc-us14"'],
    "square_oauth_secret": ['sq = "sq0csp-SsUfFgUl8oPK_HJN45P-ED75cNRqsKz5b70CO8W7RQH"'],
    "telegram_token": ['bot = "396618712:zsJqLOJqu3g9DYpQaxEN_cNljiRkV71kDRu"'],
    "discord_token": ['bot = "MYSrIiBSed1S3wlj46Fuq3sX.Ro5Qhg.YrZJd6F58LKideRuauiFtEvGjfL"'],
    "artifactory_token": [
        'headers = {"X-JFrog-Art-Api": "AKCp8g1gJk7bwKGfGhgs870XhRQXdNWOAvlhFka84v7bMwNDlfBKP4b2loPDbwAMbj8KVuxga"}'
    ],
    "azure_storage_key": [
        'conn = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=awqrczLJWImKMG4hEbuUVDPDR/m0k5iq'
        'kwUONAIifEcLav+q5ZvQmLL8ZrF8w50SR2Qugs4lIFVRdxtDyKUOtf==;EndpointSuffix=core.windows.net"'
    ],
    "ibm_cloud_iam_key": ['ibm_cloud_iam_api_key = "ZUTqr8aFvnKbnHFbDfj3u_ypO09RnKw1zW9-ohP46Pbm"'],
    "ibm_cos_hmac": ['cos_hmac_secret_access_key = "bdba261ad590acbc5fbb5ecb983b410e6f58de9b9d56191e"'],
    "cloudant_credentials": [
        'url = "https://acct:28c2f2388dc10da5bffacefd697312bba82af983eadec108b08c3ce052e96819@acct.cloudant.com"'
    ],
    "softlayer_credentials": [
        'softlayer_api_key = "xquzg3n19529wnhzycp506b8j1kad8ittkpkm2mc1nwtc9z17ujcd0471pe4cuhj"'
    ],
    "jwt": [f'headers = {{"Authorization": "Bearer {JWT}"}}'],
    "basic_auth": ['DSN = "postgresql://app:Wq7-river-Lantern@db.internal:5432/prod"'],
    "password_assignment": [f'db_password = "{PASSWORD}"'],
    "high_entropy_base64": [f'blob = "{BLOB}"'],
    "high_entropy_hex": ['digest = "0947c5eba021711473613ef6c2e0ef82"'],
    "private_key": ['KEYFILE = "PuTTY-User-Key-File-2: ssh-rsa"'],
}
PEM_SNIPPET = (
    "def signing_key():\n"
    '    return """-----BEGIN RSA PRIVATE KEY-----\n' + "\n".join(PEM_BODY) + "\n"
    '-----END RSA PRIVATE KEY-----\n"""\n'
)

scanner = SecretScanner()


def _all_positive_lines() -> list[str]:
    return [line for lines in POSITIVES.values() for line in lines]


# --- what is found, and what redaction leaves ---------------------------------------------------------------


def test_aws_key_pair_in_a_python_snippet_is_found_on_both_lines_and_only_the_values_are_replaced():
    code = textwrap.dedent(f'''\
        def upload(path):
            """Send `path` to the bucket."""
            session = boto3.Session(
                aws_access_key_id="{AWS_KEY_ID}",
                aws_secret_access_key="{AWS_SECRET}",
            )
            return session.client("s3").upload_file(path, "bucket", path)
        ''')
    redacted, hits = scanner.redact(code)
    assert hits == [Hit("aws_access_key", 4), Hit("aws_access_key", 5)]
    assert scanner.scan(code) == hits
    assert redacted == code.replace(AWS_KEY_ID, "<REDACTED:aws_access_key>").replace(
        AWS_SECRET, "<REDACTED:aws_access_key>"
    )
    assert AWS_KEY_ID not in redacted and AWS_SECRET not in redacted


def test_pem_private_key_in_a_string_literal_keeps_its_markers_and_every_line():
    redacted, hits = scanner.redact(PEM_SNIPPET)
    assert hits == [Hit("private_key", 2)]
    assert redacted == (
        "def signing_key():\n"
        '    return """-----BEGIN RSA PRIVATE KEY-----\n'
        "<REDACTED:private_key>\n" + "\n" * (len(PEM_BODY) - 1) + '-----END RSA PRIVATE KEY-----\n"""\n'
    )
    assert redacted.count("\n") == PEM_SNIPPET.count("\n")
    assert not any(line[:16] in redacted for line in PEM_BODY)
    ast.parse(redacted)


def test_pem_key_written_on_one_line_with_escapes_keeps_the_escapes():
    code = (
        'KEY = "-----BEGIN PRIVATE KEY-----\\n' + "\\n".join(PEM_BODY) + '\\n-----END PRIVATE KEY-----\\n"\n'
    )
    redacted, hits = scanner.redact(code)
    assert hits == [Hit("private_key", 1)]
    assert redacted == (
        'KEY = "-----BEGIN PRIVATE KEY-----\\n<REDACTED:private_key>'
        + "\\n" * len(PEM_BODY)
        + '-----END PRIVATE KEY-----\\n"\n'
    )


def test_encrypted_pem_keeps_its_headers_and_loses_only_the_key_material():
    headers = "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\n"
    code = (
        f"K = '''-----BEGIN RSA PRIVATE KEY-----\n{headers}"
        + "\n".join(PEM_BODY)
        + "\n-----END RSA PRIVATE KEY-----'''\n"
    )
    redacted, hits = scanner.redact(code)
    assert hits == [Hit("private_key", 1)]
    assert redacted == (
        f"K = '''-----BEGIN RSA PRIVATE KEY-----\n{headers}<REDACTED:private_key>\n"
        + "\n" * (len(PEM_BODY) - 1)
        + "-----END RSA PRIVATE KEY-----'''\n"
    )


def test_pem_markers_without_key_material_are_not_a_secret():
    code = textwrap.dedent('''\
        def is_private_key(pem: bytes) -> bool:
            return pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")

        EXAMPLE = """-----BEGIN PRIVATE KEY-----
        ...
        -----END PRIVATE KEY-----"""
        ''')
    assert scanner.scan(code) == []


def test_code_between_pem_markers_in_a_parser_is_not_a_key():
    code = textwrap.dedent("""\
        def load(data: str) -> bytes:
            start = data.index("-----BEGIN PRIVATE KEY-----") + len("-----BEGIN PRIVATE KEY-----")
            body = data[start : data.index("-----END PRIVATE KEY-----")]
            return PrivateKeyLoaderFactoryBuilder.decode(base64.b64decode(body))
        """)
    assert scanner.scan(code) == []


@pytest.mark.parametrize(
    ("line", "kind", "expected"),
    [
        (f'token = "{GITHUB}"', "github_token", 'token = "<REDACTED:github_token>"'),
        (
            f'client = WebClient(token="{SLACK}")',
            "slack_token",
            'client = WebClient(token="<REDACTED:slack_token>")',
        ),
        (
            f'db_password = "{PASSWORD}"',
            "password_assignment",
            'db_password = "<REDACTED:password_assignment>"',
        ),
        (
            f'headers = {{"Authorization": "Bearer {JWT}"}}',
            "jwt",
            'headers = {"Authorization": "Bearer <REDACTED:jwt>"}',
        ),
        (f'blob = "{BLOB}"', "high_entropy_base64", 'blob = "<REDACTED:high_entropy_base64>"'),
    ],
    ids=["github", "slack", "password", "jwt", "base64"],
)
def test_each_kind_is_found_on_its_line_and_replaced_by_its_placeholder(line, kind, expected):
    code = f"def f():\n    {line}\n    return connect()\n"
    redacted, hits = scanner.redact(code)
    assert hits == [Hit(kind, 2)]
    assert redacted == f"def f():\n    {expected}\n    return connect()\n"


def test_hits_in_one_snippet_are_counted_by_kind_with_their_lines():
    code = "\n".join(
        [
            "class Settings:",
            f'    GITHUB = "{GITHUB}"',
            f'    admin_password = "{PASSWORD}"',
            "    def headers(self):",
            f'        return {{"Authorization": "Bearer {JWT}"}}',
            f'    SLACK = "{SLACK}"',
            f'    PAIR = ("{AWS_KEY_ID}", "{BLOB}")',
        ]
    )
    hits = scanner.scan(code)
    assert Counter(h.kind for h in hits) == {
        "github_token": 1,
        "password_assignment": 1,
        "jwt": 1,
        "slack_token": 1,
        "aws_access_key": 1,
        "high_entropy_base64": 1,
    }
    assert [(h.kind, h.line) for h in hits] == [
        ("github_token", 2),
        ("password_assignment", 3),
        ("jwt", 5),
        ("slack_token", 6),
        ("aws_access_key", 7),
        ("high_entropy_base64", 7),
    ]


def test_a_short_password_is_replaced_where_it_stands_not_inside_the_name():
    redacted, hits = scanner.redact("password = 'pass'\n")
    assert hits == [Hit("password_assignment", 1)]
    assert redacted == "password = '<REDACTED:password_assignment>'\n"


def test_a_value_found_on_one_line_is_redacted_on_every_other_line_too():
    code = f'db_password = "{PASSWORD}"\nlog.debug("connecting with %s", "{PASSWORD}")\n'
    redacted, hits = scanner.redact(code)
    assert hits == [Hit("password_assignment", 1), Hit("password_assignment", 2)]
    assert PASSWORD not in redacted


def test_a_password_that_is_a_plain_word_is_not_chased_through_the_rest_of_the_text():
    code = 'password = "password"\nprint("password: ")\n'
    redacted, hits = scanner.redact(code)
    assert hits == [Hit("password_assignment", 1)]
    assert redacted == 'password = "<REDACTED:password_assignment>"\nprint("password: ")\n'


def test_detectors_that_overlap_name_the_redaction_by_priority_and_count_once():
    # The AWS secret is also a password-like assignment and a high-entropy string: one hit, the AWS one.
    assert scanner.scan(f'aws_secret_access_key = "{AWS_SECRET}"') == [Hit("aws_access_key", 1)]


def test_hits_carry_no_secret_value():
    assert [f.name for f in dataclasses.fields(Hit)] == ["kind", "line"]
    for line in _all_positive_lines():
        for hit in scanner.scan(line):
            assert hit.kind in KINDS
            assert repr(hit) == f"Hit(kind={hit.kind!r}, line=1)"


# --- what is not found ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "function",
    [
        json.dumps,
        textwrap.dedent,
        shlex.split,
        shutil.rmtree,
        urllib.parse.urlsplit,
        threading.Thread.__init__,
    ],
)
def test_real_stdlib_functions_have_no_hits(function):
    assert scanner.scan(inspect.getsource(function)) == []


def test_identifiers_all_lists_alphabets_and_env_lookups_have_no_hits():
    code = textwrap.dedent("""\
        __all__ = [
            "PyErr_SetExcFromWindowsErrWithFilenameObjects", "HTTPPasswordMgrWithDefaultRealm",
            "DocCGIXMLRPCRequestHandler", "PyUnicode_CompareWithASCIIString",
        ]
        _b32alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
        wordchars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
        password = os.environ["DB_PASSWORD"]
        secret = get_secret("deploy")
        dsn = f"postgresql://{user}:{password}@{host}/app"
        request_id = "8f14e45fceea167a5a36dedd4bea2543"
        """)
    assert scanner.scan(code) == []


def test_stdlib_modules_with_long_identifiers_and_alphabets_have_no_hits():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("_compat_pickle.py", "opcode.py", "shlex.py", "tempfile.py", "base64.py", "http/server.py"):
        assert scanner.scan((stdlib / name).read_text(encoding="utf-8")) == [], name


# --- redaction is stable ----------------------------------------------------------------------------------


def test_redacting_redacted_text_finds_nothing_and_changes_nothing():
    texts = [*_all_positive_lines(), PEM_SNIPPET, FIXTURE.read_text(encoding="utf-8")]
    for text in texts:
        once, hits = scanner.redact(text)
        assert hits, text[:40]
        assert scanner.redact(once) == (once, [])


def test_fixture_module_redacts_to_valid_python_with_the_same_lines():
    text = FIXTURE.read_text(encoding="utf-8")
    redacted, hits = scanner.redact(text)
    lines = text.splitlines()
    key_line = next(i for i, line in enumerate(lines, 1) if "AKIA" in line)
    pem_line = next(i for i, line in enumerate(lines, 1) if "BEGIN RSA PRIVATE KEY" in line)
    assert hits == [
        Hit("aws_access_key", key_line),
        Hit("aws_access_key", key_line + 1),
        Hit("private_key", pem_line),
    ]
    assert redacted.count("\n") == text.count("\n")
    assert "AKIA" not in redacted and "MIIE" not in redacted
    assert '"<REDACTED:private_key>\\n"' in redacted and redacted.count('        "\\n"\n') == 24
    ast.parse(redacted)
    # Its clean functions, alone, have no hits.
    tree = ast.parse(text)
    clean = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name not in {"storage_settings"}]
    clean = [n for n in clean if n.name != "signing_key_pem"]
    assert [n.name for n in clean] == ["parse_bool", "split_csv", "database_url", "feature_flags"]
    for node in clean:
        assert scanner.scan(ast.get_source_segment(text, node) or "") == [], node.name


# --- the prefilter loses nothing --------------------------------------------------------------------------


def _variants(line: str) -> list[str]:
    """A positive line in other surroundings: indented, in a dict, as YAML, in a comment, in a call, after a
    non-ASCII line, after a line the case folding cannot handle (dotted capital I), with CRLF line ends."""
    name, _, value = line.partition(" = ")
    return [
        line,
        f"    {line}  # noqa",
        f"config = {{{name!r}: {value}}}",
        f"{name}: {value}",
        f"# {line}",
        f"connect({name}={value}, timeout=3)",
        f"# naïve café\n{line}\n",
        f"# İstanbul\n{line}\n",
        f"x = 1\r\n{line}\r\ny = 2\r\n",
    ]


def _recased(line: str) -> list[str]:
    """The line in other cases, and with the characters re.IGNORECASE also takes for s and k (long s, Kelvin
    sign), alone and after a dotted capital I (which takes the exact case-insensitive checks): case-insensitive
    plugins may still fire, case-sensitive ones not; the prefilter must agree."""
    lines = [line.upper(), line.lower(), line.swapcase(), line.replace("s", "\u017f").replace("k", "\u212a")]
    return [*lines, *(f"# \u0130\n{x}" for x in lines)]


def test_prefilter_gives_the_same_hits_and_edits_as_scanning_every_line():
    for kind, lines in POSITIVES.items():
        for line in lines:
            for text in _variants(line):
                with_prefilter = scanner._find(text)
                assert with_prefilter == scanner._find(text, prefilter=False), text
                assert with_prefilter[0], text
            for text in _recased(line):
                assert scanner._find(text) == scanner._find(text, prefilter=False), text
            assert kind in {h.kind for h in scanner.scan(line)}, line
    assert scanner._find(PEM_SNIPPET) == scanner._find(PEM_SNIPPET, prefilter=False)


def test_every_detector_fires_on_the_corpus_and_the_prefilter_passes_every_line_where_one_does():
    state = _load()
    fired = set()
    corpus = _all_positive_lines()
    for text in corpus + [variant for line in corpus for variant in _variants(line)]:
        for part in text.splitlines():
            for detector in state.detectors:
                if list(_spans(state, detector, part)):
                    fired.add(detector.kind)
                    assert state.gate(part), (detector.kind, part)
                    assert state.gate.lines(part, [0]) == [0], (detector.kind, part)
    assert fired == set(KINDS)


def test_prefilter_passes_case_insensitive_names_written_with_unicode_folds():
    # re.IGNORECASE, which the keyword detector uses, matches the long s to "s" and the Kelvin sign to "k".
    for line in ['ſecret = "hunter2hunter2"', 'api_\u212aey = "hunter2hunter2"', 'SECRET = "hunter2hunter2"']:
        text = f"# İ\n{line}\n"
        assert scanner._find(text) == scanner._find(text, prefilter=False)
        assert scanner.scan(line) == [Hit("password_assignment", 1)], line


def test_prefilter_agrees_with_scanning_every_line_on_stdlib_files_with_candidates():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    names = ["secrets.py", "hashlib.py", "urllib/request.py", "test/test_urllib2.py", "test/test_imaplib.py"]
    found = 0
    for name in names:
        path = stdlib / name
        if not path.exists():  # test/ is not always installed
            continue
        text = path.read_text(encoding="utf-8")
        result = scanner._find(text)
        assert result == scanner._find(text, prefilter=False), name
        found += len(result[0])
    assert found > 0


def test_every_detect_secrets_plugin_is_used_or_excluded_on_purpose():
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    available = {cls.__name__ for cls in get_mapping_from_secret_type_to_class().values()}
    used = {type(d.plugin).__name__ for d in _load().detectors}
    assert available == used | set(EXCLUDED_PLUGINS)
    assert not used & set(EXCLUDED_PLUGINS)


# --- threads and processes --------------------------------------------------------------------------------


def _expected() -> list[tuple[str, tuple[str, list[Hit]]]]:
    return [(text, scanner.redact(text)) for text in [*_all_positive_lines(), PEM_SNIPPET]]


def test_scans_from_many_threads_at_once_agree_with_one_thread():
    expected = _expected()
    texts = [text for text, _ in expected] * 20
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(scanner.redact, texts))
    assert results == [result for _, result in expected] * 20


async def test_scan_in_a_worker_thread_while_the_event_loop_runs():
    expected = _expected()
    results: dict[int, tuple[str, list[Hit]]] = {}
    ticks = 0

    async def scan(i: int, text: str) -> None:
        results[i] = await anyio.to_thread.run_sync(scanner.redact, text)

    async def tick() -> None:
        nonlocal ticks
        while len(results) < len(expected):
            ticks += 1
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        for i, (text, _) in enumerate(expected):
            tg.start_soon(scan, i, text)
    assert [results[i] for i in range(len(expected))] == [result for _, result in expected]
    assert ticks > 0


@pytest.mark.timeout(120)
def test_scanner_works_in_spawned_worker_processes():
    expected = _expected()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(SecretScanner().redact, [text for text, _ in expected]))
    assert results == [result for _, result in expected]
