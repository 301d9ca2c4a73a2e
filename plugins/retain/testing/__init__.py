"""Local stand-ins for the providers' HTTP APIs, for tests that drive the official clients.

``SendGridServer`` (v3 Mail Send + Event Webhook signing) and ``TwilioServer`` (Messages API + request
signing), both with seeded fault injection. See docs/test-servers.md.
"""

from retain.testing.faults import Faults
from retain.testing.sendgrid_server import SendGridServer, SentEmail
from retain.testing.twilio_server import SentSms, TwilioServer, twilio_signature

__all__ = ["Faults", "SendGridServer", "SentEmail", "SentSms", "TwilioServer", "twilio_signature"]
