"""The plugin loader (minisip.plugins), the hook points' error handling, start-up and reload with plugins."""

from __future__ import annotations

import io
import os
import shutil
import sys
from collections.abc import Iterable
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from minisip.api import CONTINUE, IncomingRequest, Reject
from minisip.app import Server
from minisip.config import ConfigError, load_config
from minisip.interfaces import ICallObserver, ICallRouter, IRequestHandler
from minisip.plugins import PluginError, discover, parse_plugin_configs, plugin_directories
from minisip.sip.message import Response
from minisip.tap import MinisipService, build_service, load_all, make_service
from tests.core.fakes import PBX, Phone, token

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HUNTING = os.path.join(REPO, "plugins", "hunting.py")

# A plugin file; {name}, {api_version} and {prefixes} are filled in, {extra} is appended.
PLUGIN = '''
from zope.interface import implementer

from minisip.api import ConfigError
from minisip.interfaces import API_VERSION, IFeature, IFeatureFactory


@implementer(IFeature)
class Feature:
    def __init__(self, api, config):
        self.api = api
        self.config = config
        self.reconfigured = []

    def register(self, hooks):
        self.api.log.info("registered")

    def reconfigure(self, config):
        self.reconfigured.append(config)


@implementer(IFeatureFactory)
class Factory:
    name = {name!r}
    api_version = {api_version}
    description = "a test plugin"
    config_prefixes = {prefixes!r}

    def parse_config(self, sections):
        for section, values in sections.items():
            for key, value in values.items():
                if value == "bad":
                    raise ConfigError("bad value", section=section, key=key)
                if value == "crash":
                    raise KeyError(key)
        return {{section: dict(values) for section, values in sections.items()}}

    def make_feature(self, api, config):
        return Feature(api, config)


factory = Factory()
{extra}
'''


def plugin_source(name: str, prefixes: tuple[str, ...] = (), api_version: str = "API_VERSION",
                  extra: str = "") -> str:
    return PLUGIN.format(name=name, prefixes=prefixes, api_version=api_version, extra=extra)


class LogCapture:
    """Formatted log lines of the given namespaces (all when none given)."""

    def __init__(self, testcase: SynchronousTestCase, *namespaces: str) -> None:
        self.namespaces = namespaces
        self.events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, self._observe)
        globalLogPublisher.addObserver(observer)
        testcase.addCleanup(globalLogPublisher.removeObserver, observer)

    def _observe(self, event: dict[str, Any]) -> None:
        if not self.namespaces or event.get("log_namespace") in self.namespaces:
            self.events.append(event)

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def text(self) -> str:
        return "\n".join(self.lines())


class PluginDirTestCase(SynchronousTestCase):
    """A temporary directory holding plugin directories and a configuration file."""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def plugin_dir(self, name: str = "plugins", files: dict[str, str] | None = None) -> str:
        d = os.path.join(self.dir, name)
        os.makedirs(d, exist_ok=True)
        for fname, text in (files or {}).items():
            with open(os.path.join(d, fname), "w", encoding="utf-8") as f:
                f.write(text)
        return d

    def write_config(self, text: str, name: str = "minisip.conf", extensions: Iterable[str] = ("100", "101"),
                     plugins: str = "") -> str:
        path = os.path.join(self.dir, name)
        exts = "".join(f"[extension {n}]\npassword = secret-{n}\n" for n in extensions)
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"[server]\ndomain = 127.0.0.1\ndatadir = {self.dir}/data\n"
                    f"[sip]\nudp =\ntcp =\ntls =\n{exts}")
            if plugins:
                f.write(f"[plugins]\n{plugins}\n")
            f.write(text)
        return path

    def load_error(self, *files: tuple[str, str]) -> PluginError:
        d = self.plugin_dir(files=dict(files))
        return self.assertRaises(PluginError, discover, [d])


# -- discovery -----------------------------------------------------------------------------------------

class DiscoveryTests(PluginDirTestCase):
    def test_name_order_and_skipped_files(self) -> None:
        boom = "raise RuntimeError('must not be imported')\n"
        d = self.plugin_dir(files={
            "b_second.py": plugin_source("test.b"),
            "a_first.py": plugin_source("test.a"),
            "_private.py": boom,
            "__init__.py": boom,
            "notes.txt": boom,
            "old.py.orig": boom,
            "c.pyc": boom,
            "README.md": "# not a plugin\n",
        })
        found = discover([d])
        self.assertEqual([p.name for p in found], ["test.a", "test.b"])
        self.assertEqual([p.path for p in found], [os.path.join(d, "a_first.py"), os.path.join(d, "b_second.py")])
        self.assertEqual(found[0].factory.description, "a test plugin")

    def test_directory_then_name_order(self) -> None:
        first = self.plugin_dir("one", {"z.py": plugin_source("test.z")})
        second = self.plugin_dir("two", {"a.py": plugin_source("test.a"), "utils.py": plugin_source("test.u")})
        # The same file name in two directories is two modules.
        self.plugin_dir("one", {"utils.py": plugin_source("test.u1")})
        found = discover([first, second])
        self.assertEqual([p.name for p in found], ["test.u1", "test.z", "test.a", "test.u"])

    def test_directories_listed_once(self) -> None:
        d = self.plugin_dir()
        self.assertEqual(plugin_directories([d, d + "/"], [d, os.path.join(d, ".")]), [d])

    def test_missing_directory(self) -> None:
        missing = os.path.join(self.dir, "nowhere")
        e = self.assertRaises(PluginError, discover, [missing])
        self.assertIn(missing, str(e))

    def test_empty_directory(self) -> None:
        self.assertEqual(discover([self.plugin_dir()]), [])

    def test_import_error_names_file_and_reason(self) -> None:
        e = self.load_error(("needs.py", "import no_such_module_for_minisip\n" + plugin_source("test.x")))
        path = os.path.join(self.dir, "plugins", "needs.py")
        self.assertEqual(e.path, path)
        self.assertIn(path, str(e))
        self.assertIn("import failed: ModuleNotFoundError", str(e))
        self.assertIn("no_such_module_for_minisip", str(e))

    def test_syntax_and_runtime_errors(self) -> None:
        e = self.load_error(("syntax.py", "def broken(:\n"))
        self.assertIn("syntax.py", str(e))
        self.assertIn("SyntaxError", str(e))
        shutil.rmtree(os.path.join(self.dir, "plugins"))
        e = self.load_error(("runtime.py", plugin_source("test.r", extra="raise RuntimeError('no licence key')")))
        self.assertIn("runtime.py", str(e))
        self.assertIn("RuntimeError: no licence key", str(e))

    def test_no_factory(self) -> None:
        e = self.load_error(("helpers.py", "def helper():\n    return 1\n"))
        self.assertIn("helpers.py", str(e))
        self.assertIn("exposes no object providing minisip.interfaces.IFeatureFactory", str(e))

    def test_factory_class_without_instance(self) -> None:
        source = plugin_source("test.c").replace("factory = Factory()", "")
        e = self.load_error(("classonly.py", source))
        self.assertIn("classonly.py", str(e))
        self.assertIn("exposes no object", str(e))

    def test_missing_attribute(self) -> None:
        source = plugin_source("test.m").replace('    description = "a test plugin"\n', "")
        e = self.load_error(("nodesc.py", source))
        self.assertIn("nodesc.py", str(e))
        self.assertIn("does not implement IFeatureFactory", str(e))
        self.assertIn("description", str(e))

    def test_missing_method(self) -> None:
        source = plugin_source("test.m").replace("    def make_feature(self, api, config):\n"
                                                 "        return Feature(api, config)\n", "")
        e = self.load_error(("nomake.py", source))
        self.assertIn("nomake.py", str(e))
        self.assertIn("does not implement IFeatureFactory", str(e))
        self.assertIn("make_feature", str(e))

    def test_wrong_method_signature(self) -> None:
        source = plugin_source("test.m").replace("def parse_config(self, sections):", "def parse_config(self):")
        e = self.load_error(("badsig.py", source))
        self.assertIn("badsig.py", str(e))
        self.assertIn("parse_config", str(e))

    def test_unknown_api_version(self) -> None:
        e = self.load_error(("future.py", plugin_source("test.future", api_version="3")))
        self.assertIn("future.py", str(e))
        self.assertIn("plugin test.future wants API version 3; this minisip supports [2]", str(e))

    def test_api_version_reported_before_interface_mismatch(self) -> None:
        """A plugin for another API version is told so, not that it lacks a method of this one."""
        source = plugin_source("test.future", api_version="3").replace("def parse_config(self, sections):",
                                                                        "def parse_configuration(self, sections):")
        e = self.load_error(("future.py", source))
        self.assertIn("wants API version 3", str(e))

    def test_api_version_of_the_wrong_type(self) -> None:
        for version in ("'1'", "1.0", "[1]", "True"):
            shutil.rmtree(os.path.join(self.dir, "plugins"), ignore_errors=True)
            e = self.load_error(("odd.py", plugin_source("test.odd", api_version=version)))
            self.assertIn("wants API version", str(e), version)

    def test_duplicate_names_across_directories(self) -> None:
        first = self.plugin_dir("system", {"hunting.py": plugin_source("test.same")})
        second = self.plugin_dir("local", {"my_hunting.py": plugin_source("test.same")})
        e = self.assertRaises(PluginError, discover, [first, second])
        self.assertIn(os.path.join(first, "hunting.py"), str(e))
        self.assertIn(os.path.join(second, "my_hunting.py"), str(e))
        self.assertIn("duplicate plugin name 'test.same'", str(e))

    def test_one_factory_under_two_names(self) -> None:
        (found,) = discover([self.plugin_dir(files={"alias.py": plugin_source("test.alias",
                                                                             extra="default = factory")})])
        self.assertEqual(found.name, "test.alias")

    def test_disable(self) -> None:
        d = self.plugin_dir(files={"a.py": plugin_source("test.a"), "b.py": plugin_source("test.b")})
        self.assertEqual([p.name for p in discover([d], disable=["test.b"])], ["test.a"])
        self.assertEqual([p.name for p in discover([d], disable=["test.a", "test.b", "test.nothing"])], [])

    def test_disable_from_the_config_file(self) -> None:
        self.plugin_dir(files={"a.py": plugin_source("test.a", ("alpha",)), "b.py": plugin_source("test.b", ("beta",))})
        path = self.write_config("[alpha 1]\nx = 1\n", plugins="directories = plugins\ndisable = test.b")
        _, plugins, configs = load_all(path, None, [])
        self.assertEqual([p.name for p in plugins], ["test.a"])
        self.assertEqual(configs, {"test.a": {"alpha 1": {"x": "1"}}})
        # The sections of a disabled plugin are unknown, like any other.
        path = self.write_config("[beta 1]\nx = 1\n", plugins="directories = plugins\ndisable = test.b")
        e = self.assertRaises(ConfigError, load_all, path, None, [])
        self.assertEqual(e.section, "beta 1")

    def test_command_line_directories_add_to_the_config(self) -> None:
        self.plugin_dir("configured", {"a.py": plugin_source("test.a")})
        extra = self.plugin_dir("extra", {"b.py": plugin_source("test.b")})
        path = self.write_config("", plugins="directories = configured")
        _, plugins, _ = load_all(path, None, [extra])
        self.assertEqual([p.name for p in plugins], ["test.a", "test.b"])


# -- configuration ---------------------------------------------------------------------------------------

class PluginConfigTests(PluginDirTestCase):
    def load(self, text: str) -> dict[str, Any]:
        self.plugin_dir(files={"a.py": plugin_source("test.a", ("alpha", "al")),
                               "b.py": plugin_source("test.b", ("beta",))})
        path = self.write_config(text, plugins="directories = plugins")
        return load_all(path, None, [])[2]

    def test_sections_by_prefix(self) -> None:
        configs = self.load("[alpha one]\nx = 1\n[al two]\ny = 2\n[beta]\nz = 3\n")
        self.assertEqual(configs, {"test.a": {"alpha one": {"x": "1"}, "al two": {"y": "2"}},
                                   "test.b": {"beta": {"z": "3"}}})

    def test_no_sections(self) -> None:
        self.assertEqual(self.load(""), {"test.a": {}, "test.b": {}})

    def test_unclaimed_section(self) -> None:
        e = self.assertRaises(ConfigError, self.load, "[alpha 1]\nx = 1\n[gamma 7]\nx = 1\n")
        path = os.path.join(self.dir, "minisip.conf")
        self.assertEqual((e.file, e.section, e.key), (path, "gamma 7", None))
        self.assertIn(f"{path}: [gamma 7]: unknown section", str(e))

    def test_prefix_is_the_first_word(self) -> None:
        e = self.assertRaises(ConfigError, self.load, "[alphabet 1]\nx = 1\n")
        self.assertEqual(e.section, "alphabet 1")

    def test_parse_config_error_names_file_section_key(self) -> None:
        e = self.assertRaises(ConfigError, self.load, "[beta 9]\ncolour = bad\n")
        path = os.path.join(self.dir, "minisip.conf")
        self.assertEqual((e.file, e.section, e.key), (path, "beta 9", "colour"))
        self.assertEqual(str(e), f"{path}: [beta 9] colour: bad value")

    def test_parse_config_crash(self) -> None:
        e = self.assertRaises(ConfigError, self.load, "[beta 9]\ncolour = crash\n")
        self.assertIn("minisip.conf", str(e))
        self.assertIn("plugin test.b could not read its configuration: KeyError", str(e))

    def test_parse_plugin_configs_directly(self) -> None:
        d = self.plugin_dir(files={"a.py": plugin_source("test.a", ("office",))})
        path = self.write_config("[office hours]\nnumber = 999\n")
        config = load_config(path, None, ("*",))
        self.assertEqual(parse_plugin_configs(discover([d]), config),
                         {"test.a": {"office hours": {"number": "999"}}})


# -- hook points: a failing plugin fails one call or request, never the server ------------------------

@implementer(ICallObserver)
class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def call_started(self, call: Any) -> None:
        self.events.append(("started", call.callee))

    def call_answered(self, call: Any) -> None:
        self.events.append(("answered", call.callee))

    def call_ended(self, call: Any) -> None:
        self.events.append(("ended", call.cause))


@implementer(ICallObserver)
class FailingObserver:
    def call_started(self, call: Any) -> None:
        raise ZeroDivisionError("observer bug")

    call_answered = call_ended = call_started


@implementer(ICallRouter)
class FlakyRouter:
    """Fails the calls to the numbers in ``fail`` in the way given, lets every other call through."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.fail = {"100"}

    def route(self, call: Any) -> Any:
        if call.callee not in self.fail:
            return CONTINUE
        self.fail.discard(call.callee)
        if self.how == "raise":
            raise ZeroDivisionError("router bug")
        if self.how == "deferred":
            return defer.fail(ZeroDivisionError("router bug"))
        return "not a decision"


@implementer(IRequestHandler)
class FlakyHandler:
    def __init__(self, how: str) -> None:
        self.how = how
        self.calls = 0

    def handle(self, request: IncomingRequest) -> bool:
        self.calls += 1
        if self.calls == 1:
            if self.how == "raise":
                raise ZeroDivisionError("handler bug")
            return True         # "handled" without answering
        return False


class HookErrorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pbx = PBX(extensions=("100", "200"))
        self.callee = self.pbx.phone("100", "10.0.0.10")
        response = self.callee.register()
        assert response is not None and response.status == 200
        self.caller = self.pbx.phone("200", "10.0.0.20")
        self.log = LogCapture(self, "minisip.hooks", "minisip.router", "minisip.core", "minisip.server")

    def final(self, phone: Phone) -> list[int]:
        return [m.status for m in phone.inbox() if isinstance(m, Response) and m.status >= 200]

    def answered_call(self) -> None:
        """200 calls 100, 100 answers, 200 hangs up: the whole call works."""
        dlg = self.caller.call("100")
        (ringing,) = self.callee.incoming()
        ringing.respond(200)
        self.assertEqual(self.final(self.caller), [200])
        dlg.ack()
        dlg.bye()
        (bye,) = [m for m in self.callee.inbox() if not isinstance(m, Response) and m.method == "BYE"]
        ringing.respond(200, req=bye)
        self.assertEqual(self.pbx.leftovers().get("calls"), None)

    def test_failing_call_observer_is_logged_and_ignored(self) -> None:
        recorder = Recorder()
        self.pbx.core.hooks.for_owner("test.broken").add_call_observer(FailingObserver())
        self.pbx.core.hooks.for_owner("test.recorder").add_call_observer(recorder)
        self.answered_call()
        # The observer after the failing one was told everything.
        self.assertEqual(recorder.events, [("started", "100"), ("answered", "100"), ("ended", "normal")])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 3)
        text = self.log.text()
        for method in ("call_started", "call_answered", "call_ended"):
            self.assertIn(f"plugin test.broken: {method} failed (ignored)", text)
        self.assertNotIn("test.recorder", text)

    def check_router_failure(self, how: str) -> None:
        self.pbx.core.hooks.for_owner("test.router").add_router(FlakyRouter(how))
        self.caller.call("100")
        self.assertEqual(self.final(self.caller), [500])
        self.assertEqual(self.callee.incoming(), [])
        self.assertIn("router test.router", self.log.text())
        # The next call is routed as usual.
        self.answered_call()

    def test_router_raising_fails_that_call_with_500(self) -> None:
        self.check_router_failure("raise")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertIn("router test.router failed for call", self.log.text())

    def test_router_failing_deferred(self) -> None:
        self.check_router_failure("deferred")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_router_returning_nonsense(self) -> None:
        self.check_router_failure("nonsense")
        self.assertIn("router test.router returned 'not a decision': failing the call", self.log.text())

    def options(self) -> list[int]:
        req = self.caller.build("OPTIONS", "sip:127.0.0.1", call_id=token(), from_=f"<sip:200@127.0.0.1>;tag={token()}",
                                to="<sip:127.0.0.1>", cseq=1, contact=False, ctype=None)
        return [m.status for m in self.caller.send_request(req) if isinstance(m, Response)]

    def test_request_handler_raising_gets_500_for_that_request_only(self) -> None:
        handler = FlakyHandler("raise")
        self.pbx.core.hooks.for_owner("test.handler").add_request_handler("options", handler, in_dialog=False)
        self.assertEqual(self.options(), [500])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertIn("plugin test.handler: request handler for OPTIONS failed", self.log.text())
        self.assertEqual(self.options(), [200])
        self.assertEqual(handler.calls, 2)
        # Calls are not affected either.
        self.answered_call()

    def test_request_handler_claiming_without_answering(self) -> None:
        self.pbx.core.hooks.for_owner("test.handler").add_request_handler("OPTIONS", FlakyHandler("silent"),
                                                                         in_dialog=False)
        self.assertEqual(self.options(), [500])
        self.assertIn("plugin test.handler handled OPTIONS without answering it", self.log.text())
        self.assertEqual(self.options(), [200])

    def test_in_dialog_handler_not_asked_outside_dialogs(self) -> None:
        handler = FlakyHandler("raise")
        self.pbx.core.hooks.for_owner("test.handler").add_request_handler("OPTIONS", handler, in_dialog=True)
        self.assertEqual(self.options(), [200])
        self.assertEqual(handler.calls, 0)

    def test_router_priority(self) -> None:
        @implementer(ICallRouter)
        class Fixed:
            def __init__(self, code: int) -> None:
                self.code = code

            def route(self, call: Any) -> Any:
                return Reject(self.code, "Fixed")

        self.pbx.core.hooks.for_owner("test.late").add_router(Fixed(486), priority=60)
        self.pbx.core.hooks.for_owner("test.early").add_router(Fixed(403), priority=40)
        self.caller.call("100")
        self.assertEqual(self.final(self.caller), [403])


# -- start-up and reload in-process -------------------------------------------------------------------

class ServerTests(PluginDirTestCase):
    """minisip.app.Server and minisip.tap.MinisipService on a memory reactor, with no listening socket."""

    def start_server(self, path: str, extra_dirs: Iterable[str] = ()) -> tuple[Server, MinisipService]:
        config, plugins, configs = load_all(path, None, list(extra_dirs))
        reactor = MemoryReactorClock()
        svc = build_service(config, {"config": path, "datadir": None}, plugins, configs, reactor)
        svc.startService()
        reactor.run()   # the callWhenRunning hooks: the server says it is ready
        self.addCleanup(svc.stopService)
        return svc.server, svc

    def test_features_built_and_reconfigured_on_reload(self) -> None:
        self.plugin_dir(files={"a.py": plugin_source("test.a", ("alpha",)), "b.py": plugin_source("test.b")})
        path = self.write_config("[alpha 1]\ncolour = red\n", plugins="directories = plugins")
        log = LogCapture(self, "minisip", "test.a")
        server, svc = self.start_server(path)
        feature = server.features["test.a"]
        self.assertEqual(feature.config, {"alpha 1": {"colour": "red"}})
        self.assertEqual(list(server.features), ["test.a", "test.b"])
        self.assertIn("registered", log.lines())
        self.assertIn(f"plugin test.a loaded from {self.dir}/plugins/a.py: a test plugin", log.lines())
        # SIGHUP after an edit: the new section reaches the running feature.
        self.write_config("[alpha 1]\ncolour = blue\n[alpha 2]\n", plugins="directories = plugins")
        svc.reload()
        self.assertEqual(feature.reconfigured, [{"alpha 1": {"colour": "blue"}, "alpha 2": {}}])
        self.assertEqual(server.features["test.b"].reconfigured, [{}])
        self.assertIn("configuration reloaded from", log.text())
        # A bad value is refused whole: nobody is reconfigured.
        self.write_config("[alpha 1]\ncolour = bad\n", plugins="directories = plugins")
        svc.reload()
        self.assertEqual(len(feature.reconfigured), 1)
        self.assertIn(f"configuration reload refused, the running configuration stays: {path}: "
                      "[alpha 1] colour: bad value", log.text())
        # So is a section no plugin claims.
        self.write_config("[gamma 1]\n", plugins="directories = plugins")
        svc.reload()
        self.assertEqual(len(feature.reconfigured), 1)
        self.assertIn("[gamma 1]: unknown section", log.text())

    def test_reload_removing_a_hunting_operator_is_refused_whole(self) -> None:
        """Issue 8 point 10: the new config removes extension 101, an operator of group 600. The reload
        is refused before anything applies: 101 stays an extension and the group stays as it was."""
        d = self.plugin_dir("shipped")
        shutil.copy(HUNTING, d)
        path = self.write_config("[hunt 600]\noperators = 100 101\n", plugins="directories = shipped")
        server, svc = self.start_server(path)
        log = LogCapture(self, "minisip")
        self.write_config("[hunt 600]\noperators = 100 101\n", plugins="directories = shipped",
                          extensions=("100",))
        svc.reload()
        self.assertIn("configuration reload refused, the running configuration stays", log.text())
        self.assertIn("[hunt 600] operators: operator 101 is not an extension", log.text())
        self.assertNotIn("configuration reloaded", log.text())
        self.assertIn("101", server.core.extensions)
        self.assertEqual(sorted(server.features["minisip.hunting"].groups["600"].operators[i].number
                                for i in range(2)), ["100", "101"])

    def test_reload_says_what_needs_a_restart(self) -> None:
        """Issue 12 point 6: a changed [plugins] or listening address is named, not silently kept."""
        self.plugin_dir(files={"a.py": plugin_source("test.a", ("alpha",))})
        self.plugin_dir("more")
        path = self.write_config("", plugins="directories = plugins")
        server, svc = self.start_server(path)
        log = LogCapture(self, "minisip")
        self.write_config("", plugins="directories = plugins more")
        svc.reload()
        self.assertIn("[plugins] directories changed: takes effect after a restart", log.text())
        self.assertEqual(list(server.features), ["test.a"])

    def test_reload_keeps_the_plugins_found_at_start(self) -> None:
        self.plugin_dir(files={"a.py": plugin_source("test.a", ("alpha",))})
        path = self.write_config("", plugins="directories = plugins")
        server, svc = self.start_server(path)
        self.plugin_dir(files={"b.py": plugin_source("test.b", ("beta",))})
        self.write_config("[beta 1]\n", plugins="directories = plugins")
        log = LogCapture(self, "minisip")
        svc.reload()
        self.assertIn("[beta 1]: unknown section", log.text())
        self.assertEqual(list(server.features), ["test.a"])

    def test_apply_config_reconfigure_failure_is_logged(self) -> None:
        self.plugin_dir(files={"a.py": plugin_source("test.a", ("alpha",)).replace(
            "        self.reconfigured.append(config)", "        raise ZeroDivisionError('reconfigure bug')")})
        path = self.write_config("", plugins="directories = plugins")
        server, _ = self.start_server(path)
        log = LogCapture(self, "minisip")
        config, _, configs = load_all(path, None, [], server.plugins)
        server.apply_config(config, configs)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertIn("plugin test.a: reconfigure failed", log.text())
        self.assertIn("2 extensions configured", log.text())

    def hunting_with_unknown_operator(self) -> str:
        d = self.plugin_dir("shipped")
        shutil.copy(HUNTING, d)
        return self.write_config("[hunt 600]\noperators = 100 999\n", plugins="directories = shipped")

    def test_make_feature_config_error_names_the_file(self) -> None:
        path = self.hunting_with_unknown_operator()
        config, plugins, configs = load_all(path, None, [])
        server = Server(config, Clock(), plugins=plugins, plugin_configs=configs)
        self.addCleanup(server.abandon)
        e = self.assertRaises(ConfigError, server.build)
        self.assertEqual((e.file, e.section, e.key), (path, "hunt 600", "operators"))
        self.assertEqual(str(e), f"{path}: [hunt 600] operators: operator 999 is not an extension")

    def test_start_refused_cleanly_when_make_feature_refuses_the_config(self) -> None:
        path = self.hunting_with_unknown_operator()
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        e = self.assertRaises(SystemExit, make_service, {"config": path}, Clock())
        self.assertEqual(e.code, 2)
        self.assertEqual(stderr.getvalue(),
                         f"minisip: cannot start: {path}: [hunt 600] operators: operator 999 is not an extension\n")

    def test_start_refused_when_make_feature_returns_no_feature(self) -> None:
        source = plugin_source("test.a").replace("return Feature(api, config)", "return object()")
        self.assertIn(f"minisip: cannot start: plugin {self.dir}/plugins/a.py: make_feature did not return an "
                      "IFeature", self.refused_start(source))

    def refused_start(self, source: str) -> str:
        """Start with plugin ``source`` in plugins/a.py; the exit code must be 2; what stderr says."""
        self.plugin_dir(files={"a.py": source})
        path = self.write_config("", plugins="directories = plugins")
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        self.assertEqual(self.assertRaises(SystemExit, make_service, {"config": path}, Clock()).code, 2)
        self.assertEqual(self.flushLoggedErrors(), [], "no traceback in the log")
        return stderr.getvalue()

    def test_start_refused_when_make_feature_raises(self) -> None:
        source = plugin_source("test.a").replace("return Feature(api, config)", "return 1 / 0")
        line = source.splitlines().index(next(x for x in source.splitlines() if "return 1 / 0" in x)) + 1
        self.assertEqual(self.refused_start(source),
                         f"minisip: cannot start: plugin {self.dir}/plugins/a.py: make_feature failed: "
                         f"ZeroDivisionError: division by zero (at {self.dir}/plugins/a.py:{line})\n")

    def test_start_refused_when_register_raises(self) -> None:
        source = plugin_source("test.a").replace("    def register(self, hooks):\n",
                                                 "    def register(self, hooks):\n        {}['missing']\n")
        self.assertIn("{}['missing']", source)
        err = self.refused_start(source)
        self.assertTrue(err.startswith(f"minisip: cannot start: plugin {self.dir}/plugins/a.py: register failed: "
                                       f"KeyError: 'missing' (at {self.dir}/plugins/a.py:"), err)
        self.assertEqual(err.count("\n"), 1, err)


# -- the real command line -------------------------------------------------------------------------------
