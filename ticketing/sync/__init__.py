"""Two-way status sync, vendor-neutral: registering the PSA's webhook or callback
(registration), receiving its calls (webhooks), polling (polling), applying a ticket's change
to its incident (inbound), and telling the host product (host). Each PSA's side is its
status-sync capability (integrations/base/status_sync.py, in integrations/<vendor>/webhooks.py).
"""
