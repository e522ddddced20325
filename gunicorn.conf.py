# Gunicorn settings for pwdrst: `gunicorn -c gunicorn.conf.py wsgi:app`.
# Threads, not processes, carry the concurrency: a request spends most of its time waiting for the
# directory, and each thread keeps its own directory connections. Measured with benchmarks/run.py on
# 2 cores: gthread 2 x 8 used 14.2 ms of app CPU per password change and 7.5 ms per reset request,
# 8 sync workers (one request per process, as behind a buffering proxy) 16.5 and 8.1 ms with four
# times the memory; 4 x 4 and 4 x 8 gthread were no better. See the README's performance notes.
import os
import shutil
import tempfile

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

# Prometheus metrics across workers (prometheus_client's multiprocess mode): each worker writes its
# values to files in this private directory, and /metrics adds them up. Set here, before any worker
# imports the client; emptied at start so that an earlier run's counts do not come back.
_own_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir = os.environ.get("PWDRST_GUNICORN_METRICS_DIR") or tempfile.mkdtemp(prefix="pwdrst-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir


def on_starting(server):
    """Refuse several workers that would count limits apart; empty the metrics folder of a past run."""
    from pwdrst import config

    try:
        problem = config.worker_problem(config.load_settings(), server.cfg.workers)
    except config.ConfigError as exc:
        problem = exc.message
    if problem:
        # gunicorn prints a RuntimeError's message as "Error: ..." and exits with status 1.
        raise RuntimeError(problem)
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, mode=0o700, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.unlink(os.path.join(folder, name))


def child_exit(server, worker):
    # A dead worker's live gauges (the mail queue's depth) no longer count; its counters still do.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir and not os.environ.get("PWDRST_GUNICORN_METRICS_DIR"):
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
