"""Services at run time: the balancer state of every service port (kept across policy generations), and the
per-request (or per-connection) call that picks endpoints, retries within the budget and sheds load."""
