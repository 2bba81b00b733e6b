"""Reading HTML pages: DocBook's navigation, contents and index dropped, blocks as lines, headings marked."""

from __future__ import annotations

from pathlib import Path

from onnxvec.sources.files import INDEX_PAGE, LoadOptions, load_file
from onnxvec.sources.html import read_html

# the shape of a page of the PostgreSQL manual (DocBook XSL), cut down
NAV = """<div class="navheader"><table width="100%" summary="Navigation header"><tr><th colspan="5"
align="center">20.4. Resource Consumption</th></tr><tr><td width="10%" align="left"><a accesskey="p"
href="runtime-config-connection.html">Prev</a> </td><td><a accesskey="u" href="runtime-config.html">Up</a></td>
<th width="60%" align="center">Chapter 20. Server Configuration</th><td><a accesskey="h" href="index.html">Home</a>
</td><td> <a accesskey="n" href="runtime-config-wal.html">Next</a></td></tr></table><hr /></div>"""
FOOTER = """<div class="navfooter"><hr /><table width="100%" summary="Navigation footer"><tr><td><a accesskey="p"
href="runtime-config-connection.html">Prev</a> </td><td><a accesskey="u" href="runtime-config.html">Up</a></td>
<td> <a accesskey="n" href="runtime-config-wal.html">Next</a></td></tr><tr><td>20.3. Connections and
Authentication </td><td><a accesskey="h" href="index.html">Home</a></td><td> 20.5. Write Ahead Log</td></tr>
</table></div>"""
PAGE = f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>20.4. Resource Consumption</title>
<link rel="stylesheet" type="text/css" href="stylesheet.css" /><script>var x = 1;</script></head>
<body id="docContent">{NAV}<div class="sect1" id="RUNTIME-CONFIG-RESOURCE"><div class="titlepage"><div><div>
<h2 class="title" style="clear: both">20.4. Resource Consumption</h2></div></div></div>
<div class="toc"><dl class="toc"><dt><span class="sect2"><a href="#MEMORY">20.4.1. Memory</a></span></dt>
<dt><span class="sect2"><a href="#DISK">20.4.2. Disk</a></span></dt></dl></div>
<div class="sect2" id="MEMORY"><div class="titlepage"><div><div><h3 class="title">20.4.1. Memory</h3></div></div>
</div><div class="variablelist"><dl class="variablelist"><dt id="GUC-SHARED-BUFFERS"><span class="term">
<code class="varname">shared_buffers</code> (<code class="type">integer</code>)
      <a id="id-1.6.7.7.2.2.1.1.3" class="indexterm"></a>
      </span></dt><dd><p>
        Sets the amount of memory the database server uses for shared
        memory buffers.  The default is typically 128 megabytes.
        </p></dd><dt id="GUC-WORK-MEM"><span class="term"><code class="varname">work_mem</code>
(<code class="type">integer</code>)</span></dt><dd><p>Sets the base maximum amount of memory to be used
by a query operation (such as a sort or hash table) before writing to temporary disk files.</p>
<div class="note"><h3 class="title">Note</h3><p>A sort may use several times this much.</p></div></dd></dl>
</div></div><div class="sect2" id="DISK"><div class="titlepage"><div><div><h3 class="title">20.4.2. Disk</h3>
</div></div></div><div class="table"><p class="title"><strong>Table 20.1. Limits</strong></p>
<table class="table" summary="Limits" border="1"><thead><tr><th>Name</th><th>Unit</th></tr></thead>
<tbody><tr><td>temp_file_limit</td><td>kB</td></tr><tr><td><code>max_files_per_process</code></td>
<td><p>files</p></td></tr></tbody></table></div>
<ul class="itemizedlist"><li class="listitem"><p>first item</p></li><li class="listitem">second item</li></ul>
<pre class="programlisting">SET work_mem = '64MB';
  SELECT * FROM   big ORDER BY 1;</pre></div></div>{FOOTER}</body></html>"""

INDEX = f"""<html><head><title>Index</title></head><body>{NAV}<div class="index" id="BOOKINDEX">
<div class="titlepage"><div><div><h1 class="title">Index</h1></div></div></div><div class="index">
<p class="indexdiv-quicklinks"><a href="#indexdiv-A">A</a> | <a href="#indexdiv-B">B</a></p>
<div class="indexdiv"><h3>A</h3><dl><dt>ABORT, <a class="indexterm" href="sql-abort.html">ABORT</a></dt>
<dt>aggregate function, <a class="indexterm" href="tutorial-agg.html">Aggregate Functions</a></dt>
<dd><dl><dt>built-in, <a class="indexterm" href="functions-aggregate.html">Aggregate Functions</a></dt></dl></dd>
</dl></div></div></div>{FOOTER}</body></html>"""


def test_docbook_page_reads_as_sections_without_navigation_or_contents() -> None:
    page = read_html(PAGE)
    assert page.title == "20.4. Resource Consumption" and not page.index
    assert page.text.splitlines() == [
        "## 20.4. Resource Consumption",
        "### 20.4.1. Memory",
        "#### shared_buffers (integer)",
        "Sets the amount of memory the database server uses for shared memory buffers. The default is typically"
        " 128 megabytes.",
        "#### work_mem (integer)",
        "Sets the base maximum amount of memory to be used by a query operation (such as a sort or hash table)"
        " before writing to temporary disk files.",
        "Note",  # an aside's title is no section heading
        "A sort may use several times this much.",
        "### 20.4.2. Disk",
        "Table 20.1. Limits",
        "Name | Unit",
        "temp_file_limit | kB",
        "max_files_per_process | files",
        "- first item",
        "- second item",
        "SET work_mem = '64MB';",
        "  SELECT * FROM   big ORDER BY 1;",
    ]


def test_generic_navigation_is_dropped_and_a_missing_title_falls_back_to_h1() -> None:
    markup = (
        "<html><body><header><a href='/'>Site</a></header><nav><a href='/a'>A</a></nav>"
        "<div role='navigation'>Breadcrumbs</div><main><h1>Install\n guide</h1><p>Run the\n   installer.</p>"
        "</main><footer>Copyright</footer><style>p{}</style><noscript>x</noscript></body></html>"
    )
    page = read_html(markup)
    assert page.title == "Install guide"
    assert page.text == "# Install guide\nRun the installer."


def test_index_page_is_skipped_with_its_reason_and_the_others_load(tmp_path: Path) -> None:
    assert read_html(INDEX).index
    (tmp_path / "bookindex.html").write_text(INDEX)
    (tmp_path / "page.html").write_text(PAGE)
    (index,) = load_file(tmp_path / "bookindex.html", LoadOptions())
    (page,) = load_file(tmp_path / "page.html", LoadOptions())
    assert index.error == INDEX_PAGE and index.text == ""
    assert page.error is None and page.metadata["title"] == "20.4. Resource Consumption"
    assert page.metadata["type"] == "html" and page.text.startswith("## 20.4. Resource Consumption\n")


def test_a_title_given_as_metadata_wins_over_the_page_title(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(PAGE)
    (doc,) = load_file(tmp_path / "page.html", LoadOptions(extra_metadata={"title": "mine"}))
    assert doc.metadata["title"] == "mine"
