"""Secret patterns, as data: which detect-secrets plugins run (and which not, and why), the kinds they
report, their entropy limits, and the literals and patterns of the prefilter (:mod:`stream.secrets.gate`),
one or more per provider.

No logic lives here: :mod:`stream.secrets.scanner` scans and redacts, :mod:`stream.secrets.detectors` loads the
plugins, :mod:`stream.secrets.gate` compiles the prefilter from these tables.
"""

from __future__ import annotations

import re

__all__ = [
    "PLUGINS",
    "KINDS",
    "EXCLUDED_PLUGINS",
    "BASE64_LIMIT",
    "HEX_LIMIT",
    "NEWLINE",
    "LITERALS",
    "PATTERNS",
    "KEY_NAMES",
    "PASS_NAMES",
    "LOWER_LITERALS",
    "LOWER_PATTERNS",
    "AWS_SECRET",
    "AWS_SECRET_CHARS",
    "CASELESS_PATTERNS",
]

# (module under detect_secrets.plugins, class, kind, generic), in priority order: when detectors claim
# overlapping text, the first one's kind names the redaction. Generic detectors guess from a variable name or
# from the shape of a string, so detect-secrets' heuristic filters apply to them.
PLUGINS: tuple[tuple[str, str, str, bool], ...] = (
    ("private_key", "PrivateKeyDetector", "private_key", False),
    ("aws", "AWSKeyDetector", "aws_access_key", False),
    ("github_token", "GitHubTokenDetector", "github_token", False),
    ("gitlab_token", "GitLabTokenDetector", "gitlab_token", False),
    ("slack", "SlackDetector", "slack_token", False),
    ("openai", "OpenAIDetector", "openai_key", False),
    ("stripe", "StripeDetector", "stripe_key", False),
    ("sendgrid", "SendGridDetector", "sendgrid_key", False),
    ("pypi_token", "PypiTokenDetector", "pypi_token", False),
    ("npm", "NpmDetector", "npm_token", False),
    ("twilio", "TwilioKeyDetector", "twilio_key", False),
    ("mailchimp", "MailchimpDetector", "mailchimp_key", False),
    ("square_oauth", "SquareOAuthDetector", "square_oauth_secret", False),
    ("telegram_token", "TelegramBotTokenDetector", "telegram_token", False),
    ("discord", "DiscordBotTokenDetector", "discord_token", False),
    ("artifactory", "ArtifactoryDetector", "artifactory_token", False),
    ("azure_storage_key", "AzureStorageKeyDetector", "azure_storage_key", False),
    ("ibm_cloud_iam", "IbmCloudIamDetector", "ibm_cloud_iam_key", False),
    ("ibm_cos_hmac", "IbmCosHmacDetector", "ibm_cos_hmac", False),
    ("cloudant", "CloudantDetector", "cloudant_credentials", False),
    ("softlayer", "SoftlayerDetector", "softlayer_credentials", False),
    ("jwt", "JwtTokenDetector", "jwt", False),
    ("basic_auth", "BasicAuthDetector", "basic_auth", True),
    ("keyword", "KeywordDetector", "password_assignment", True),
    ("high_entropy_strings", "Base64HighEntropyString", "high_entropy_base64", True),
    ("high_entropy_strings", "HexHighEntropyString", "high_entropy_hex", True),
)

#: Every kind a `Hit` can have, in priority order (``private_key`` covers PEM blocks and PuTTY key files;
#: ``password_assignment`` is detect-secrets' keyword detector: a quoted value given to a name like password,
#: secret, api_key, ...).
KINDS: tuple[str, ...] = tuple(kind for _, _, kind, _ in PLUGINS)

#: detect-secrets plugins not used, and why.
EXCLUDED_PLUGINS: dict[str, str] = {
    "IPPublicDetector": "a public IPv4 address is not a credential (it flags 631 lines of the stdlib)",
}

# Entropy limits (bits per character, Shannon) of the high-entropy detectors: detect-secrets' defaults. On the
# stdlib, 4.5 flags no identifier (the longest reach 4.43) and 4.0 flags hundreds; see bench/secrets_scan.py.
BASE64_LIMIT = 4.5
HEX_LIMIT = 3.0

NEWLINE = re.compile(r"\r\n|\r|\n")  # the line ends Python's tokenizer knows (not \f, \x1c, \u2028, ...)


# --- the prefilter's literals and patterns ---------------------------------------------------------------
# For each detector, necessary conditions on every one of its matches: a copy or a loosening of the plugin's
# own regex (see stream.secrets.gate). Case-insensitive plugin patterns are checked on the lowered text.
LITERALS = (
    "PRIVATE KEY",  # PrivateKeyDetector, PEM blocks
    "PuTTY-User-Key-File-2",  # PrivateKeyDetector
    "T3BlbkFJ",  # OpenAI
    "k_live_",  # Stripe
    "SG.",  # SendGrid
    "pypi-AgE",  # PyPI
    ":_authToken=",  # npm
    "sq0csp-",  # Square
    "eyJ",  # JWT
    "AccountKey=",  # Azure
    "GR1348941",  # GitLab runner token
)
PATTERNS = (
    r"(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}",  # AWS key id
    r"gh[pousr]_",  # GitHub
    r"gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent|oas)-",  # GitLab
    r"AC[a-z0-9]{32}",  # Twilio
    r"SK[a-z0-9]{32}",  # Twilio
    r"-us[0-9]",  # Mailchimp
    r":[0-9A-Za-z_-]{35}",  # Telegram: <digits>:<35>
    r"\.[a-zA-Z\d_-]{6}\.[a-zA-Z\d_-]{27}",  # Discord: <24>.<6>.<27>
    r"AKC[a-zA-Z0-9]{10}|AP[\dABCDEF][a-zA-Z0-9]{8}",  # Artifactory
    r"://\S*@",  # basic auth: ://user:password@
    # high entropy: more than 2**limit characters between quotes (n characters carry at most log2(n) bits);
    # completed from the plugins' charsets and limits in `Gate.__init__`
)
KEY_NAMES = ("api", "auth", "service", "account", "db", "database", "priv", "private", "client")
PASS_NAMES = ("db", "database", "key")
LOWER_LITERALS = (
    *("passw", "pwd", "secret", "contrase"),  # keyword detector's names (with the first two patterns below)
    "hooks.slack.com",  # Slack webhook
)
LOWER_PATTERNS = (
    "key(?:" + "|".join(f"(?<={n}{sep}key)" for n in KEY_NAMES for sep in ("_", "")) + ")",  # api_key, ...
    "pass(?:" + "|".join(f"(?<={n}{sep}pass)" for n in PASS_NAMES for sep in ("_", "")) + ")",  # db_pass
    r"xox[abposr]-",  # Slack
    r"cl(?:oudant|ou)?[_-]?(?:api)?(?:key|pw|pass|token)|cloudant\.com",  # Cloudant
)
# AWS secret key: aws...key...'<40>', case-insensitive; see `Gate.__init__`.
AWS_SECRET = r"['\"][0-9a-z/+]{40}['\"]"
AWS_SECRET_CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ/+"
# The same, exactly case-insensitive, for a text that cannot be lowered in place.
CASELESS_PATTERNS = (
    r"passw|pwd|secret|contrase|(?:" + "|".join(KEY_NAMES) + ")_?key|(?:" + "|".join(PASS_NAMES) + ")_?pass",
    r"hooks\.slack\.com",
    *LOWER_PATTERNS[2:],
)
