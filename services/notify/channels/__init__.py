"""Delivery channels: email over SMTP, a GOV.UK Notify-style API, signed webhooks."""
