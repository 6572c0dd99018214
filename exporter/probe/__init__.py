"""`cams-exporter probe`: bounded read-only calls that find out how the real API behaves.

- `questions`: the calls and what each answer says about the open questions of the API notes;
- `findings`: findings and the settings they lead to;
- `report`: the command: accounts probed in turn, the report as text or JSON.
"""
