// How much of what an evaluator prepared on its previous call it may reuse
// without checking. Check compares every field the prepared parts depend on
// (always correct); SameShape is the search's promise that only the state
// choices (ZeRO stage, optimizer and parameter offload, tile factor) changed
// since the previous call on the same evaluator, which for_each_layout's
// shape id (and the checkpoint placement) tells it.
#pragma once

namespace zp {

enum class Reuse { Check, SameShape };

}  // namespace zp
