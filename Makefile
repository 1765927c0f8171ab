# Top-level entry points (README.md). CMake does the building.
BUILD      ?= build
TEST_BUILD ?= build-test
GCC_BUILD  ?= build-gcc
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
MAKEFLAGS  += --no-print-directory

.PHONY: all deps demo test format check-format install clean bench

all: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DNS_TESTS=OFF >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

deps:
	@scripts/install-deps.sh

demo: all
	@examples/users-upload/demo.sh $(BUILD)/nightshift

# Tests build separately with clang, sanitizers, -Werror and the fuzzers;
# everything (tests included) also builds with gcc at -Werror, optimised,
# where gcc's own warnings (truncation, maybe-uninitialized) show.
test: deps check-format
	@CC=gcc cmake -S . -B $(GCC_BUILD) -DCMAKE_BUILD_TYPE=Release -DNS_WERROR=ON -DNS_FUZZ=OFF \
		>/dev/null
	@cmake --build $(GCC_BUILD) -j $(JOBS) >/dev/null || cmake --build $(GCC_BUILD) -j 1
	@echo "gcc -Werror build: ok"
	@CC=clang cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DNS_SANITIZE=ON \
		-DNS_WERROR=ON -DNS_FUZZ=ON -DNS_TEST_HOOKS=ON >/dev/null
	@cmake --build $(TEST_BUILD) -j $(JOBS)
	@cd $(TEST_BUILD) && ctest --output-on-failure -j $(JOBS)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

check-format:
	@scripts/check-format.sh

bench: all
	@bench/csv-to-sqlite/run.sh $(BUILD)/nightshift

install: all
	@cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(GCC_BUILD)
