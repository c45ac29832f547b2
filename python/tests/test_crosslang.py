"""One store, four languages: what Python writes, C (build/kvtool), Bun and the HTTP server read, and
what they write, Python reads."""

import json
import os
import selectors
import subprocess
import time
import unittest
import urllib.request

from tests.helpers import BUN, ROOT, TempStore, kvtool, wait_until


def bun_eval(script: str, name: str) -> str:
    ran = subprocess.run([BUN, "-e", script], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "NAME": name})
    if ran.returncode != 0:
        raise AssertionError(f"bun exited {ran.returncode}: {ran.stderr}")
    return ran.stdout


class Server:
    """`bun src/server.ts` on a free port, serving the store ``name``; stopped on leaving the block."""

    def __init__(self, name: str):
        env = {**os.environ, "PORT": "0", "KV_SHM_NAME": name}
        self.proc = subprocess.Popen([BUN, "src/server.ts", "--quiet"], cwd=ROOT, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def __enter__(self):
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        deadline, printed = time.monotonic() + 30, ""
        while time.monotonic() < deadline and selector.select(deadline - time.monotonic()):
            line = self.proc.stdout.readline()
            printed += line
            if not line or "listening on " in line:
                break
        if "listening on " not in printed:
            self.__exit__()
            raise AssertionError(f"the server did not listen:\n{printed}")
        self.url = printed.split("listening on ")[1].split()[0]
        return self

    def __exit__(self, *_exc):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()

    def request(self, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path.lstrip("/"), data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


class CrossLanguage(unittest.TestCase):
    def test_python_writes_are_read_by_c_bun_and_http_and_theirs_by_python(self):
        with TempStore(max_entries=16) as t:
            t.store.set("from-python", "héllo from Python")
            with Server(t.name) as server:
                read_by_c = kvtool(t.name, "get", "from-python")
                read_by_bun = bun_eval(
                    "import { KvStore } from './src/store.ts';"
                    "using s = KvStore.open(process.env.NAME); console.log(JSON.stringify(s.getEntry('from-python')?.value));",
                    t.name,
                )
                self.assertEqual(
                    [read_by_c.stdout, json.loads(read_by_bun), server.request("/get/from-python")],
                    ["héllo from Python", "héllo from Python", {"key": "from-python", "value": "héllo from Python"}],
                )
                self.assertEqual(kvtool(t.name, "set", "from-c", "written in C").returncode, 0)
                bun_eval("import { KvStore } from './src/store.ts';"
                         "using s = KvStore.open(process.env.NAME); s.set('from-bun', 'written by Bun');", t.name)
                server.request("/set", {"key": "from-http", "value": "written over HTTP ✓"})
            self.assertEqual(
                [t.store.get("from-c"), t.store.get("from-bun"), t.store.get("from-http")],
                ["written in C", "written by Bun", "written over HTTP ✓"],
            )
            self.assertEqual(t.store.keys("from-"), ["from-python", "from-c", "from-bun", "from-http"])

    def test_an_expiry_written_in_one_language_is_honoured_by_the_others(self):
        with TempStore(max_entries=16) as t:
            # Expiries an hour away, so that starting Bun takes none of them: each reads the other's.
            t.store.set("hour-python", "long", ttl_ms=3600000)
            expires_at = t.store.get_entry("hour-python").expires_at
            read_by_bun = json.loads(bun_eval(
                "import { KvStore } from './src/store.ts';"
                "using s = KvStore.open(process.env.NAME); s.set('hour-bun', 'long', { ttl: 3600000 });"
                "console.log(JSON.stringify(['hour-python', 'hour-bun'].map((k) => s.getEntry(k)?.expiresAt ?? null)));",
                t.name,
            ))
            self.assertEqual(read_by_bun[0], round(expires_at * 1000))
            self.assertEqual(t.store.get_entry("hour-bun").expires_at, read_by_bun[1] / 1000)
            # Brief ones, by Python and by Bun: absent for every language once they have passed.
            t.store.set("from-python", "brief", ttl_ms=40)
            bun_eval("import { KvStore } from './src/store.ts';"
                     "using s = KvStore.open(process.env.NAME); s.set('from-bun', 'brief', { ttl: 40 });", t.name)
            wait_until(lambda: t.store.keys("from-") == [], "both have expired for Python")
            read_by_c = [kvtool(t.name, "get", key) for key in ["from-python", "from-bun"]]
            self.assertEqual([(r.returncode != 0, r.stdout) for r in read_by_c], [(True, ""), (True, "")])
            self.assertIn("key not found", read_by_c[0].stderr)
            read_by_bun = bun_eval(
                "import { KvStore } from './src/store.ts';"
                "using s = KvStore.open(process.env.NAME);"
                "console.log(JSON.stringify([s.get('from-python') ?? null, s.get('from-bun') ?? null, s.keysFrom(0, 16, 'from-').items]));",
                t.name,
            )
            self.assertEqual(json.loads(read_by_bun), [None, None, []])


if __name__ == "__main__":
    unittest.main()
