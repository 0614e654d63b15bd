/* vinscan-tiff's side of libtiff: a TIFF opened from a byte buffer in memory, libtiff's errors
 * kept per handle (not in a process-wide handler), and the few directory fields vinscan reads.
 * Written in C because libtiff's error callbacks take a va_list, which stable Rust cannot
 * format; everything else is plain calls made from Rust. Needs libtiff >= 4.5 (TIFFOpenOptions). */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

typedef struct {
    const unsigned char *data;
    uint64_t len;
    uint64_t pos;
    /* the first error libtiff reported on this handle, "module: message" */
    char error[512];
    int errors;
} vinscan_memtiff;

static tmsize_t mem_read(thandle_t h, void *buf, tmsize_t size) {
    vinscan_memtiff *m = (vinscan_memtiff *)h;
    if (size <= 0 || m->pos >= m->len) return 0;
    uint64_t n = m->len - m->pos;
    if ((uint64_t)size < n) n = (uint64_t)size;
    memcpy(buf, m->data + m->pos, (size_t)n);
    m->pos += n;
    return (tmsize_t)n;
}

static tmsize_t mem_write(thandle_t h, void *buf, tmsize_t size) {
    (void)h; (void)buf; (void)size;
    return 0; /* read-only */
}

static toff_t mem_seek(thandle_t h, toff_t off, int whence) {
    vinscan_memtiff *m = (vinscan_memtiff *)h;
    uint64_t base;
    switch (whence) {
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = m->pos; break;
    case SEEK_END: base = m->len; break;
    default: return (toff_t)-1;
    }
    /* off is unsigned; libtiff passes offsets from the file start in practice */
    if (off > UINT64_MAX - base) return (toff_t)-1;
    m->pos = base + off;
    return (toff_t)m->pos;
}

static int mem_close(thandle_t h) { (void)h; return 0; }

static toff_t mem_size(thandle_t h) { return (toff_t)((vinscan_memtiff *)h)->len; }

static int mem_map(thandle_t h, void **base, toff_t *size) {
    vinscan_memtiff *m = (vinscan_memtiff *)h;
    *base = (void *)m->data;
    *size = (toff_t)m->len;
    return 1;
}

static void mem_unmap(thandle_t h, void *base, toff_t size) { (void)h; (void)base; (void)size; }

/* The name handles are opened under; libtiff passes it as the "module" of some errors, which
 * then says nothing: such errors are kept without it. */
#define HANDLE_NAME "TIFF"

static int on_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif;
    vinscan_memtiff *m = (vinscan_memtiff *)user;
    if (m == NULL) return 1;
    if (m->errors++ == 0) {
        int n = 0;
        if (module != NULL && strcmp(module, HANDLE_NAME) != 0)
            n = snprintf(m->error, sizeof m->error, "%s: ", module);
        if (n < 0 || (size_t)n >= sizeof m->error) n = 0;
        vsnprintf(m->error + n, sizeof m->error - (size_t)n, fmt, ap);
    }
    return 1; /* handled: nothing printed to stderr */
}

static int on_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif; (void)user; (void)module; (void)fmt; (void)ap;
    return 1; /* unknown tags and the like: not vinscan's business, and never on stderr */
}

/* Opens `len` bytes at `data` (which must outlive the handle) with `state` as the handle's
 * client data. max_alloc bounds any single allocation libtiff makes (0: libtiff's default).
 * Returns NULL on failure, with the reason in state->error. */
TIFF *vinscan_memtiff_open(const unsigned char *data, uint64_t len, vinscan_memtiff *state,
                           int64_t max_alloc) {
    memset(state, 0, sizeof *state);
    state->data = data;
    state->len = len;
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (opts == NULL) {
        snprintf(state->error, sizeof state->error, "out of memory");
        state->errors = 1;
        return NULL;
    }
    TIFFOpenOptionsSetErrorHandlerExtR(opts, on_error, state);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, on_warning, state);
    if (max_alloc > 0) TIFFOpenOptionsSetMaxSingleMemAlloc(opts, (tmsize_t)max_alloc);
    /* "rm": read-only, and every read goes through mem_read's bounds checks rather than
     * libtiff's mapped-file path */
    TIFF *tif = TIFFClientOpenExt(HANDLE_NAME, "rm", (thandle_t)state, mem_read, mem_write, mem_seek,
                                  mem_close, mem_size, mem_map, mem_unmap, opts);
    TIFFOpenOptionsFree(opts);
    return tif;
}

/* The fields vinscan reads from the current directory, libtiff's defaults where absent. */
typedef struct {
    uint32_t width;
    uint32_t height;
    uint32_t subfile_type;     /* NewSubfileType (254): bit 0 reduced image, bit 2 mask */
    uint32_t old_subfile_type; /* SubfileType (255): 2 = reduced resolution; 0 if absent */
    uint32_t orientation;      /* 1..8, as EXIF */
    uint32_t compression;
    uint32_t photometric;
    float x_resolution;        /* XResolution, YResolution; 0 if absent */
    float y_resolution;
} vinscan_memtiff_directory;

static uint64_t read_uint(const unsigned char *p, int bytes, int big_endian) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        int k = big_endian ? i : bytes - 1 - i;
        v = (v << 8) | p[k];
    }
    return v;
}

/* The SHORT or LONG value of `tag` in the directory at `offset`, read from the file's bytes
 * (libtiff 4.5 ignores the old SubfileType tag: its getter never returns it). 0 if absent. */
static uint32_t raw_directory_value(const vinscan_memtiff *m, uint64_t offset, uint16_t tag) {
    if (m->len < 8) return 0;
    int big_endian = m->data[0] == 'M';
    int big_tiff = read_uint(m->data + 2, 2, big_endian) == 43;
    int count_size = big_tiff ? 8 : 2, entry_size = big_tiff ? 20 : 12, value_at = big_tiff ? 12 : 8;
    if (offset > m->len || m->len - offset < (uint64_t)count_size) return 0;
    uint64_t entries = read_uint(m->data + offset, count_size, big_endian);
    uint64_t first = offset + (uint64_t)count_size;
    if (entries > (m->len - first) / (uint64_t)entry_size) return 0;
    for (uint64_t i = 0; i < entries; i++) {
        const unsigned char *e = m->data + first + i * (uint64_t)entry_size;
        if (read_uint(e, 2, big_endian) != tag) continue;
        uint64_t type = read_uint(e + 2, 2, big_endian);
        if (type == 3) return (uint32_t)read_uint(e + value_at, 2, big_endian); /* SHORT */
        if (type == 4) return (uint32_t)read_uint(e + value_at, 4, big_endian); /* LONG */
        return 0;
    }
    return 0;
}

int vinscan_memtiff_directory_fields(TIFF *tif, vinscan_memtiff_directory *out) {
    uint32_t w = 0, h = 0, sub = 0;
    uint16_t orient = ORIENTATION_TOPLEFT, comp = COMPRESSION_NONE, photo = 0;
    float xres = 0, yres = 0;
    memset(out, 0, sizeof *out);
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h))
        return 0;
    TIFFGetFieldDefaulted(tif, TIFFTAG_SUBFILETYPE, &sub);
    TIFFGetFieldDefaulted(tif, TIFFTAG_ORIENTATION, &orient);
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &comp);
    if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photo)) photo = UINT16_MAX;
    if (!TIFFGetField(tif, TIFFTAG_XRESOLUTION, &xres)) xres = 0;
    if (!TIFFGetField(tif, TIFFTAG_YRESOLUTION, &yres)) yres = 0;
    out->width = w;
    out->height = h;
    out->subfile_type = sub;
    out->old_subfile_type =
        raw_directory_value((const vinscan_memtiff *)TIFFClientdata(tif), TIFFCurrentDirOffset(tif), 255);
    out->orientation = orient;
    out->compression = comp;
    out->photometric = photo;
    out->x_resolution = xres;
    out->y_resolution = yres;
    return 1;
}

/* The current directory as 8-bit RGBA (libtiff's ABGR-packed uint32 raster, associated alpha),
 * rows in the order stored: the Orientation tag is returned, not applied, so that the caller
 * applies all eight (TIFFRGBAImage only flips, it never transposes). */
int vinscan_memtiff_read_rgba(TIFF *tif, uint32_t width, uint32_t height, uint32_t *raster,
                              uint32_t orientation) {
    return TIFFReadRGBAImageOriented(tif, width, height, raster, (int)orientation, 1);
}
