"""Channel modules (sendgrid, twilio, outbox) behind one interface: ``retain.channels.base.Channel``."""
