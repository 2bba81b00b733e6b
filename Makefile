# Two commands on a fresh machine: `make up` and `make test`. Everything else is a helper for them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export ONNXVEC_HOME ?= $(CURDIR)/.onnxvec

.PHONY: up test test-fast install model lint bench clean compose-plugin

$(BIN)/onnxvec: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev,build]'
	touch $@

install: $(BIN)/onnxvec

model: install
	$(BIN)/onnxvec models pull all-MiniLM-L6-v2
	$(BIN)/onnxvec models pull SmolLM2-135M-Instruct
	$(BIN)/onnxvec models pull Qwen2.5-Coder-0.5B-Instruct

up: model
	$(BIN)/onnxvec up

test: install compose-plugin
	$(BIN)/pytest

# the unit tests: pure logic, no services or models, seconds (`pytest -m "not slow"` skips only the slow ones)
test-fast: install compose-plugin
	$(BIN)/pytest tests/unit -q

# `make test` runs `docker compose config` wherever the docker client is. Where its compose plugin is
# missing, apt-get downloads Debian's build of the plugin (trixie's; bookworm only has compose v1) from
# the mirror this machine's apt sources already name, with the sha256 pinned, into .tools/.
ARCH := $(shell dpkg --print-architecture 2>/dev/null)
COMPOSE_VERSION := 2.26.1-4
COMPOSE_SHA256_amd64 := 47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea
COMPOSE_SHA256_arm64 := bbafaa666f3e7fa00ad36f2a8bab889f1c791ca8743d674e7267a3d07203869c
APT_TOOLS := -o Dir::Etc::SourceList=$(CURDIR)/.tools/apt/sources.list -o Dir::Etc::SourceParts=/nonexistent \
	-o Dir::State::Lists=$(CURDIR)/.tools/apt/lists -o Dir::Cache=$(CURDIR)/.tools/apt/cache

compose-plugin:
	@if command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory .tools/cli-plugins/docker-compose; fi

.tools/cli-plugins/docker-compose:
	mkdir -p .tools/apt/lists/partial .tools/apt/cache/archives/partial .tools/deb
	mirror=$$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $$2; exit}'); \
	[ -n "$$mirror" ] || mirror=$$(cat /etc/apt/sources.list 2>/dev/null | awk '$$1 == "deb" {print $$2; exit}'); \
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $$mirror trixie main" > .tools/apt/sources.list
	apt-get -qq $(APT_TOOLS) update
	cd .tools && apt-get -qq $(APT_TOOLS) download docker-compose=$(COMPOSE_VERSION) 2>&1 | grep -v unsandboxed || true
	echo "$(COMPOSE_SHA256_$(ARCH))  .tools/docker-compose_$(COMPOSE_VERSION)_$(ARCH).deb" | sha256sum -c --quiet -
	dpkg-deb -x .tools/docker-compose_$(COMPOSE_VERSION)_$(ARCH).deb .tools/deb
	mkdir -p $(@D) && mv .tools/deb/usr/libexec/docker/cli-plugins/docker-compose $@
	rm -rf .tools/deb .tools/apt .tools/docker-compose_*.deb

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: model
	$(BIN)/python -m pip install --quiet -e '.[dev,build,bench]'
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/peers.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/chat.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/sync.py
	$(BIN)/python bench/rag.py
	$(BIN)/python bench/reembed.py

clean:
	-$(BIN)/onnxvec services stop
	rm -rf $(VENV) .onnxvec .tools
