"""Template polling: which template-language units exist, and one account's poll cycle.

- `discovery`: units from ListChatappTemplate and the config, re-listed every interval;
- `vanishing`: a template dropped only after a second complete listing confirms it is gone;
- `grouping`: one read per language, or per template when the API proved it answers that way;
- `sharding`: rendezvous hashing of units (and numbers) over `--shard i/N` replicas;
- `activity`: which units a cycle reads: active ones every cycle, idle ones at their slot once
  per `poll.idle_interval`;
- `waking`: the spaces whose numbers sent more than their templates: their idle units at once;
- `poller`: `AccountPoller`, one cycle over the units it reads, and the series it publishes.
"""
