"""The test mailbox's SMTP server (crates/testkit/src/mailbox.rs starts it): aiosmtpd on
127.0.0.1, writing each message it accepts to DIR/new/ (via DIR/tmp/, so a reader never sees
half a file), one file per message, named so that sorting the names gives the arrival order.

--security plain     no TLS, no AUTH
--security starttls  STARTTLS offered and required before anything else, then AUTH required
--security implicit  TLS from the first byte (SMTPS), AUTH required
The one accepted login is MAILBOX_USER / MAILBOX_PASSWORD (from the environment, not argv).
A recipient whose local part is `refuse` is refused for good (550), for the tests of permanent
failures. Prints `ready` on stdout once it listens; exits 3 when aiosmtpd is missing.
"""

import argparse
import asyncio
import os
import ssl
import sys
import time
import uuid

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    sys.stderr.write(f"aiosmtpd is not installed for {sys.executable}\n")
    sys.exit(3)


class Spool:
    """aiosmtpd's handler: refuses `refuse@...`, writes every accepted message to disk."""

    def __init__(self, directory):
        self.directory = directory

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@", 1)[0].lower() == "refuse":
            return "550 5.1.1 <%s>: recipient refused by the test mailbox" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        name = "%020d-%s.eml" % (time.time_ns(), uuid.uuid4().hex)
        staged = os.path.join(self.directory, "tmp", name)
        with open(staged, "wb") as f:
            f.write(envelope.original_content)
        os.rename(staged, os.path.join(self.directory, "new", name))
        return "250 2.0.0 Message accepted"


def authenticator(user, password):
    """Accepts exactly one login."""

    def check(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (user, password)
        # Not handled: aiosmtpd answers 235, or 535 when the login is refused.
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    return check


def tls_context(cert, key):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


async def serve(args):
    loop = asyncio.get_running_loop()
    for sub in ("tmp", "new"):
        os.makedirs(os.path.join(args.dir, sub), exist_ok=True)
    handler = Spool(args.dir)
    options = {}
    implicit = None
    if args.security != "plain":
        user = os.environ["MAILBOX_USER"].encode()
        password = os.environ["MAILBOX_PASSWORD"].encode()
        options.update(authenticator=authenticator(user, password), auth_required=True)
        context = tls_context(args.cert, args.key)
        if args.security == "starttls":
            options.update(tls_context=context, require_starttls=True)
        else:
            # The whole connection is TLS: AUTH needs no STARTTLS first.
            implicit = context
            options.update(auth_require_tls=False)

    def factory():
        return SMTP(handler, hostname="localhost", loop=loop, **options)

    server = await loop.create_server(factory, host="127.0.0.1", port=args.port, ssl=implicit)
    print("ready", flush=True)
    await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--security", choices=("plain", "starttls", "implicit"), default="plain")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
