# Gunicorn settings for pwdrst: `gunicorn -c gunicorn.conf.py wsgi:app`.
# Threads, not processes, carry the concurrency: a request spends most of its time waiting for the
# directory, and each thread keeps its own directory connections. See the README's performance notes.
import os

bind = os.environ.get("PWDRST_GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("PWDRST_GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("PWDRST_GUNICORN_THREADS", "8"))
worker_class = "gthread"
keepalive = 5
timeout = 30
# Long enough for the mail queue to deliver what is pending (MAIL_SHUTDOWN_GRACE) at a restart.
graceful_timeout = 30
accesslog = os.environ.get("PWDRST_GUNICORN_ACCESS_LOG", "-") or None
# Link paths carry tokens: the access log must never hold one.
logger_class = "pwdrst.accesslog.RedactingLogger"


def on_starting(server):
    """Refuse to start several workers that would each count rate limits in their own memory."""
    from pwdrst import config

    try:
        problem = config.worker_problem(config.load_settings(), server.cfg.workers)
    except config.ConfigError as exc:
        problem = exc.message
    if problem:
        # gunicorn prints a RuntimeError's message as "Error: ..." and exits with status 1.
        raise RuntimeError(problem)
