/* openai: placeholder until the module lands. */
#include "openai.h"
