"""Block rectangles as GNU Radio Companion draws them: GRC's own canvas code lays out each
block of the given .grc files (labels, visible parameters, ports) and this prints
{file: [[name, x, y, width, height], ...]} as JSON. Run it under /usr/bin/python3 on a
display (xvfb-run); tests/test_grc.py checks with it that no two blocks of an example
overlap."""
import json, sys
import gi
gi.require_version("Gtk", "3.0"); gi.require_version("PangoCairo", "1.0")
from gi.repository import Gio, Gtk
from gnuradio import gr
_app = Gtk.Application(application_id='org.gensemcom.layout')
_app.register(None)
Gio.Application.set_default(_app)
Gtk.Menu.attach_to_widget = lambda self, *a: None  # no main window: we only measure
from gnuradio.grc.gui.Platform import Platform
platform = Platform(version=gr.version(), version_parts=(gr.major_version(), gr.api_version(), gr.minor_version()),
                    prefs=gr.prefs(), install_prefix=gr.prefix())
platform.build_library()
out = {}
for path in sys.argv[1:]:
    fg = platform.make_flow_graph(path)
    fg.import_data(platform.parse_flow_graph(path))
    fg.rewrite(); fg.validate()
    rects = []
    for b in fg.blocks:
        if b.key == "options":
            continue
        b.create_labels(); b.create_shapes()
        x, y = b.coordinate
        w, h = (b.width, b.height) if b.is_horizontal() else (b.height, b.width)
        rects.append([b.name, x, y, w, h])
    out[path] = rects
print(json.dumps(out))
