/* Runs a --selftest build's NAME_selftest() on the host and prints its result, then each
 * vector's first differing layer with both checksums (host_tests/test_selftest_profile.py).
 * -DMODEL_PREFIX=name -DMODEL_UPPER=NAME: the model's prefixes. */
#include <stdint.h>
#include <stdio.h>

#include MODEL_HEADER

#define PASTE2(a, b) a##b
#define PASTE(a, b) PASTE2(a, b)
#define MODEL_NAME(suffix) PASTE(MODEL_PREFIX, suffix)
#define VECTORS PASTE(MODEL_UPPER, _SELFTEST_VECTORS)
#define LAYERS PASTE(MODEL_UPPER, _LAYERS)

int main(void)
{
    const int result = MODEL_NAME(_selftest)();
    printf("selftest: %d\n", result);
    for (int v = 0; v < VECTORS; v++) {
        const uint32_t *expected;
        const uint32_t *actual;
        if (MODEL_NAME(_selftest_vector)(v, &expected, &actual) == NULL) {
            return 1;
        }
        for (int layer = 0; layer < LAYERS; layer++) {
            if (expected[layer] != actual[layer]) {
                printf("vector %d layer %d expected %08lx computed %08lx\n", v, layer,
                       (unsigned long)expected[layer], (unsigned long)actual[layer]);
                break;
            }
        }
    }
    return MODEL_NAME(_selftest_vector)(VECTORS, NULL, NULL) == NULL ? 0 : 2;
}
