"""The Slack connector: Events API webhook in (messages of threads), Web API out (ticket cards).

Files by role: `config.py` (SlackConfig), `client.py` (Web API calls and their errors),
`source.py` (the signed Events API webhook), `mapping.py` (Slack events -> SocialMessage),
`cards.py` (TicketRecord -> Block Kit), `sink.py` (PostCard/UpdateCard), `connector.py` (PLUGIN).
"""
