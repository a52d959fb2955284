#!/usr/bin/env python3
# imgpatch stand-in for the heat-config `script` hook: echoes its input.
import json, sys
print(json.dumps({'deploy_stdout': 'stand-in', 'deploy_status_code': 0, 'input': sys.stdin.read()}))
