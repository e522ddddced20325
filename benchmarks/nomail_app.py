"""The app without the password-change notification mail: `benchmarks/run.py --no-mail` only.

Measures what the notification costs a change; every other mail is sent as usual.
"""

from pwdrst import create_app, mail

mail.password_changed = lambda *args, **kwargs: None
app = create_app()
