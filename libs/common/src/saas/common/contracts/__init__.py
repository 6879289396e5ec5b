"""Request/reply and event contracts shared by every service. Defined once, here."""
