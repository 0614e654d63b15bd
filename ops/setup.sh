#!/usr/bin/env bash
# Installs the system packages vinscan's build needs on a fresh Debian machine:
# cmake (llama.cpp's build), clang + libclang-dev (bindgen for llama-cpp-sys-2), libssl-dev +
# pkg-config (librdkafka's TLS and SCRAM), libtiff-dev (TIFF pages: vinscan-tiff links the system
# libtiff), libtesseract-dev + libleptonica-dev + tesseract-ocr-vie (page OCR: vinscan-ocr links
# Tesseract 5 and reads its Vietnamese model), and for the test broker Java 17 and Maven.
# gcc/g++/make come with the machine. Idempotent: installs only what is missing.
set -euo pipefail
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v clang >/dev/null 2>&1 || need+=(clang)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
dpkg -s libtiff-dev >/dev/null 2>&1 || need+=(libtiff-dev)
dpkg -s libtesseract-dev >/dev/null 2>&1 || need+=(libtesseract-dev)
dpkg -s libleptonica-dev >/dev/null 2>&1 || need+=(libleptonica-dev)
dpkg -s tesseract-ocr-vie >/dev/null 2>&1 || need+=(tesseract-ocr-vie)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
if [ ${#need[@]} -gt 0 ]; then
  echo "ops/setup.sh: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
