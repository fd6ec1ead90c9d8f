/* Trains the character-level GPT of gpt.kn on examples/gpt/sums.txt (lines `a+b=c`, made by
 * scripts/gpt_data.py) with AdamW: each step takes 16 windows of 65 characters at offsets drawn
 * from a 64-bit LCG, and the compiled `gpt_step` does the forward pass, its gradient and the
 * update of the flat parameter vector and its moments in one call. Prints the loss as it falls,
 * then prompts the model with `a+b=` for 50 new sums, samples the answer character by
 * character at temperature 0.2 (the compiled `gpt_sample`) and prints the share it got right.
 *
 * The initial parameters and the batches come from the same LCG as scripts/jax_fixture.py's,
 * so that tests/training.rs can check the losses against the same model in JAX.
 * Usage: gpt SUMS_TXT [steps] [--every N] (default 400 steps, a loss line every steps/10). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt.h"

#define N GPT_STEP_P_SIZE
#define BATCH GPT_STEP_TEXT_DIM0
#define WINDOW GPT_STEP_TEXT_DIM1
#define CONTEXT GPT_SAMPLE_CONTEXT_DIM1
#define VOCAB GPT_SAMPLE_U_DIM0
#define D 128
#define LAYERS 4

static unsigned long long state = 1;

/* The LCG (Knuth's MMIX constants): its next 32 high bits. */
static unsigned int next_u32(void) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned int)(state >> 32);
}

/* Uniform in [0, 1) with 24 bits. */
static float uniform(void) { return (float)(next_u32() >> 8) / 16777216.0f; }

/* Character codes: digits 0-9, '+' 10, '=' 11, newline 12; -1 for anything else. */
static int code(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    return c == '+' ? 10 : c == '=' ? 11 : c == '\n' ? 12 : -1;
}

/* The parameters in gpt.kn's order (see `unpack`): elements, and the half-width of the
 * uniform initial values (0 for biases; gains start at 1). */
static const struct { int n; float scale; int gain; } PARTS[] = {
    {16 * D, 0.0346f, 0}, {64 * D, 0.0346f, 0}, {LAYERS * D, 0, 1}, {LAYERS * D, 0, 0},
    {LAYERS * D * 3 * D, 0.0346f, 0}, {LAYERS * D * D, 0.0122f, 0}, {LAYERS * D, 0, 1}, {LAYERS * D, 0, 0},
    {LAYERS * D * 4 * D, 0.0346f, 0}, {LAYERS * 4 * D, 0, 0}, {LAYERS * 4 * D * D, 0.0122f, 0}, {LAYERS * D, 0, 0},
    {D, 0, 1}, {D, 0, 0}, {D * 16, 0.0346f, 0},
};

static void init(float *p) {
    int at = 0;
    for (size_t k = 0; k < sizeof PARTS / sizeof PARTS[0]; k++) {
        for (int i = 0; i < PARTS[k].n; i++)
            p[at + i] = PARTS[k].gain ? 1.0f : PARTS[k].scale == 0 ? 0.0f : PARTS[k].scale * (2.0f * uniform() - 1.0f);
        at += PARTS[k].n;
    }
    if (at != N) {
        fprintf(stderr, "parameter layout has %d elements, gpt_step takes %d\n", at, N);
        exit(1);
    }
}

static char *read_text(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)*len + 1);
    if (!text || fread(text, 1, (size_t)*len, f) != (size_t)*len) return NULL;
    fclose(f);
    text[*len] = 0;
    return text;
}

/* The answer the model gives to `a+b=`: characters sampled until a newline (at most 4). */
static int answer(const float *p, int a, int b, float temperature, void *workspace) {
    int32_t context[CONTEXT] = {0};
    char prompt[16];
    int n = snprintf(prompt, sizeof prompt, "%d+%d=", a, b);
    for (int i = 0; i < n; i++) context[i] = code(prompt[i]);
    int value = 0;
    for (int at = n - 1; at < n + 3; at++) {
        static int32_t draw = 0; /* each sample's key: fold_in(key(SEED), draw) */
        const uint32_t seed = 2024;
        int32_t next = 0, position = at;
        draw++;
        if (gpt_sample(context, &position, p, &temperature, &seed, &draw, &next, workspace) != 0) return -1;
        if (next == 12) return value;
        if (next > 9) return -1;
        value = value * 10 + next;
        context[at + 1] = next;
    }
    return -1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: gpt SUMS_TXT [steps] [--every N]\n");
        return 2;
    }
    long len = 0;
    char *text = read_text(argv[1], &len);
    if (!text || len < WINDOW) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    int steps = argc > 2 ? atoi(argv[2]) : 400;
    int every = argc > 4 && strcmp(argv[3], "--every") == 0 ? atoi(argv[4]) : (steps / 10 > 0 ? steps / 10 : 1);
    float *p = malloc(N * sizeof(float)), *m = calloc(N, sizeof(float)), *v = calloc(N, sizeof(float));
    float *p2 = malloc(N * sizeof(float)), *m2 = malloc(N * sizeof(float)), *v2 = malloc(N * sizeof(float));
    void *workspace = aligned_alloc(64, GPT_STEP_WORKSPACE_BYTES);
    if (!p || !m || !v || !p2 || !m2 || !v2 || !workspace) return 1;
    init(p);
    static int32_t batch[BATCH * WINDOW];
    float loss = 0.0f, first = 0.0f;
    for (int s = 0; s < steps; s++) {
        for (int b = 0; b < BATCH; b++) {
            long start = (long)(next_u32() % (unsigned int)(len - WINDOW));
            for (int t = 0; t < WINDOW; t++) batch[b * WINDOW + t] = code(text[start + t]);
        }
        float t = (float)(s + 1);
        if (gpt_step(p, m, v, &t, batch, &loss, p2, m2, v2, workspace) != 0) {
            fprintf(stderr, "gpt_step failed\n");
            return 1;
        }
        float *swap;
        swap = p, p = p2, p2 = swap;
        swap = m, m = m2, m2 = swap;
        swap = v, v = v2, v2 = swap;
        if (s == 0) first = loss;
        if (s % every == 0 || s == steps - 1) printf("step %5d  loss %.6f\n", s, loss);
    }
    int right = 0;
    for (int k = 0; k < 50; k++) {
        int a = (int)(next_u32() % 100), b = (int)(next_u32() % 100);
        int got = answer(p, a, b, 0.2f, workspace);
        if (got == a + b) right++;
        if (k < 5) printf("%d+%d=%d%s\n", a, b, got, got == a + b ? "" : " (wrong)");
    }
    printf("final loss %.4f (from %.4f), right sums %.2f\n", loss, first, right / 50.0);
    free(text), free(p), free(m), free(v), free(p2), free(m2), free(v2), free(workspace);
    return 0;
}
