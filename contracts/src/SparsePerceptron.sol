// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "./Ownable.sol";
import {IClassifier} from "./Classifier.sol";

/// @notice Binary perceptron over sparse inputs: a sample is the list of indices of its present
/// features. Weights, intercept and learning rate are fixed point with scale 1e9.
/// predict: 1 if intercept + sum(weights[i]) > 0 else 0.
/// update: only on a mistake, each listed weight moves by +learningRate (label 1) or -learningRate
/// (label 0); a repeated index moves twice. The intercept is never updated (as in the reference).
///
/// Gas: weights are int80, packed three to a slot at WEIGHTS + index / 3 (no keccak per access, and
/// deployment writes a third of the slots). Intercept and learning rate never change, so they are
/// immutables and cost no storage read. So is the width: every index is checked against it in the
/// same pass that reads the weights (one comparison per index), so no index can reach a slot
/// outside the model.
///
/// Averaged mode (`averaging` > 0, fixed at deployment; 0 keeps the plain perceptron above): the
/// fixed-step perceptron memorises each sample it learns from, so one label-flipped contribution
/// turns the model against its true class until someone undoes it. Averaged, the model answers with
/// the mean of its weight vectors over every update call so far, the deployed weights counting as
/// `averaging` calls, so one contribution moves the answer by about 1 / (calls so far).
/// State: the training weights w (learn as above, on a mistake of w itself), u_i = sum over updates
/// of delta * C (C = the call count before that update) and C = averaging + update calls. The
/// average is w - u / C, so predict tests C * (intercept + sum w_i) - sum u_i > 0: exact integers, no
/// division. Each feature keeps w (int80, low bits) and u (int176, high bits) in one slot of its own
/// at AVERAGED + index, so a score still reads one slot per index; C is one more slot.
contract SparsePerceptron is Ownable, IClassifier {
    uint256 private constant PER_SLOT = 3;
    uint256 private constant WIDTH = 80;
    uint256 private constant MASK = 0xffffffffffffffffffff; // 80 bits
    /// Base slot of the packed weights: far above Solidity's own sequential slots, and a value the
    /// optimizer builds with three cheap opcodes (a full 32-byte constant is copied from code).
    uint256 private constant WEIGHTS = 0xdca1 << 240;
    /// Base slot of averaged mode's (w, u) pairs, one feature per slot.
    uint256 private constant AVERAGED = 0xdca3 << 240;

    int80 public immutable intercept;
    int80 public immutable learningRate;
    uint256 public immutable numFeatures;
    /// 0: plain perceptron. Else averaged, the deployed weights counting as this many update calls.
    uint256 public immutable averaging;
    /// Averaged mode: `averaging` + the number of update calls so far (C above).
    uint256 public steps;

    string[] public classifications;

    event AddClass(string name, uint256 index);

    error NegativeFeatureIndex(int64 index);
    error BadClassification(uint64 classification);
    error UnalignedChunk(uint256 startIndex);
    error LengthMismatch();
    error WeightOverflow(uint256 index);
    error FeatureOutOfRange(uint256 index);

    constructor(
        string[] memory classifications_,
        int80 intercept_,
        int80 learningRate_,
        uint256 numFeatures_,
        uint256 averaging_
    ) {
        if (classifications_.length != 2) revert BadClassification(uint64(classifications_.length));
        for (uint256 i = 0; i < classifications_.length; ++i) {
            classifications.push(classifications_[i]);
            emit AddClass(classifications_[i], i);
        }
        intercept = intercept_;
        learningRate = learningRate_;
        numFeatures = numFeatures_;
        averaging = averaging_;
        if (averaging_ != 0) steps = averaging_;
    }

    function getNumClassifications() external view returns (uint256) {
        return classifications.length;
    }

    /// Deployment in chunks: weights for indices startIndex .. startIndex+len-1. startIndex must be a
    /// multiple of 3 so whole slots are written without reading them first.
    function initializeWeights(uint256 startIndex, int80[] calldata weights_) external onlyOwner {
        if (startIndex % PER_SLOT != 0) revert UnalignedChunk(startIndex);
        uint256 n = weights_.length;
        if (averaging != 0) {
            // One (w, u = 0) slot per feature.
            for (uint256 i = 0; i < n; ++i) {
                uint256 word = uint256(uint80(weights_[i])) & MASK;
                uint256 at = AVERAGED + startIndex + i;
                assembly {
                    sstore(at, word)
                }
            }
            return;
        }
        uint256 slot = WEIGHTS + startIndex / PER_SLOT;
        for (uint256 i = 0; i < n; i += PER_SLOT) {
            uint256 word = 0;
            uint256 end = i + PER_SLOT < n ? i + PER_SLOT : n;
            for (uint256 j = i; j < end; ++j) {
                word |= (uint256(uint80(weights_[j])) & MASK) << (WIDTH * (j - i));
            }
            if (end - i < PER_SLOT) {
                // A partial last slot keeps whatever lies beyond the chunk.
                uint256 keep;
                assembly {
                    keep := sload(slot)
                }
                word |= keep & ~((uint256(1) << (WIDTH * (end - i))) - 1);
            }
            assembly {
                sstore(slot, word)
            }
            ++slot;
        }
    }

    /// Deployment of scattered weights: (index, weight) pairs.
    function initializeSparseWeights(uint64[] calldata indices, int80[] calldata weights_) external onlyOwner {
        if (indices.length != weights_.length) revert LengthMismatch();
        for (uint256 i = 0; i < indices.length; ++i) {
            _setWeight(indices[i], weights_[i]);
        }
    }

    /// The training weights (averaged mode: w, not the average w - u / steps).
    function weights(uint256 index) public view returns (int80 w) {
        if (averaging != 0) {
            uint256 at = AVERAGED + index;
            assembly {
                w := signextend(9, sload(at))
            }
            return w;
        }
        uint256 slot = WEIGHTS + index / PER_SLOT;
        uint256 shift = WIDTH * (index % PER_SLOT);
        assembly {
            w := signextend(9, shr(shift, sload(slot)))
        }
    }

    /// Bulk read for off-chain twins: weights[start .. start+count-1].
    function getWeights(uint256 start, uint256 count) external view returns (int80[] memory out) {
        out = new int80[](count);
        for (uint256 i = 0; i < count; ++i) {
            out[i] = weights(start + i);
        }
    }

    /// Averaged mode: u_i (sum of delta * C over the updates of feature i).
    function sums(uint256 index) public view returns (int256 u) {
        uint256 at = AVERAGED + index;
        assembly {
            u := sar(80, sload(at))
        }
    }

    /// Bulk read for off-chain twins: sums[start .. start+count-1] (zeros in plain mode).
    function getSums(uint256 start, uint256 count) external view returns (int256[] memory out) {
        out = new int256[](count);
        if (averaging == 0) return out;
        for (uint256 i = 0; i < count; ++i) {
            out[i] = sums(start + i);
        }
    }

    function predict(int64[] calldata data) public view returns (uint64) {
        if (averaging != 0) {
            (int256 sw, int256 su) = _scoreAveraged(data);
            return int256(steps) * sw - su > 0 ? 1 : 0;
        }
        return _score(data) > 0 ? 1 : 0;
    }

    function update(int64[] calldata data, uint64 classification) external onlyOwner {
        if (classification > 1) revert BadClassification(classification);
        if (averaging != 0) {
            _updateAveraged(data, classification);
            return;
        }
        (int256 score, uint256 cache, bool sorted) = _scoreCaching(data);
        if ((score > 0 ? 1 : 0) == classification) return;
        int256 delta = classification == 1 ? int256(learningRate) : -int256(learningRate);
        uint256 bad = type(uint256).max;
        // Indices were validated by _scoreCaching, which also kept each index's slot word in memory.
        // With non-decreasing indices a slot's occurrences are consecutive, so the word is the cached
        // original at its first occurrence and the word just written at the next ones. Otherwise
        // (unsorted input) every word is read again from storage, so a repeated index or two indices
        // sharing a slot always see the earlier change, as sequential code would.
        assembly {
            let lastSlot := not(0)
            let word := 0
            let n := data.length
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                let idx := calldataload(add(data.offset, shl(5, i)))
                let slot := add(WEIGHTS, div(idx, PER_SLOT))
                if iszero(eq(slot, lastSlot)) {
                    switch sorted
                    case 0 { word := sload(slot) }
                    default { word := mload(add(cache, shl(5, i))) }
                }
                let shift := mul(WIDTH, mod(idx, PER_SLOT))
                let w := add(signextend(9, shr(shift, word)), delta)
                if iszero(eq(signextend(9, w), w)) {
                    bad := idx
                    break
                }
                word := or(and(word, not(shl(shift, MASK))), shl(shift, and(w, MASK)))
                sstore(slot, word)
                lastSlot := slot
            }
        }
        if (bad != type(uint256).max) revert WeightOverflow(bad);
    }

    /// Averaged mode's update: count the call; on a mistake of the training weights w, move w by
    /// delta and u by delta * C (C before this call is counted), index by index in input order, so a
    /// repeated index moves twice.
    function _updateAveraged(int64[] calldata data, uint64 classification) private {
        (int256 sw, ) = _scoreAveraged(data);
        uint256 c = steps;
        steps = c + 1;
        if ((sw > 0 ? 1 : 0) == classification) return;
        int256 delta = classification == 1 ? int256(learningRate) : -int256(learningRate);
        int256 du = delta * int256(c);
        uint256 bad = type(uint256).max;
        assembly {
            let n := data.length
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                let idx := calldataload(add(data.offset, shl(5, i)))
                let at := add(AVERAGED, idx)
                let word := sload(at)
                let w := add(signextend(9, word), delta)
                let u := add(sar(80, word), du)
                // w must stay an int80 and u an int176 (21 bytes + 1 sign byte = 22 bytes: signextend(21)).
                if or(iszero(eq(signextend(9, w), w)), iszero(eq(signextend(21, u), u))) {
                    bad := idx
                    break
                }
                sstore(at, or(shl(80, u), and(w, MASK)))
            }
        }
        if (bad != type(uint256).max) revert WeightOverflow(bad);
    }

    /// Averaged mode: (intercept + sum w_i, sum u_i) over the listed indices; reverts on a bad index.
    function _scoreAveraged(int64[] calldata data) private view returns (int256 sw, int256 su) {
        sw = intercept;
        uint256 bad = 0;
        uint256 nf = numFeatures;
        assembly {
            let p := data.offset
            for { let end := add(p, shl(5, data.length)) } lt(p, end) { p := add(p, 0x20) } {
                let idx := calldataload(p)
                bad := or(bad, iszero(lt(idx, nf)))
                let word := sload(add(AVERAGED, idx))
                sw := add(sw, signextend(9, word))
                su := add(su, sar(80, word))
            }
        }
        if (bad != 0) _revertBadIndex(data);
    }

    /// _score, also keeping each index's slot word in memory (at `cache`) and whether the indices
    /// are non-decreasing.
    function _scoreCaching(int64[] calldata data) private view returns (int256 s, uint256 cache, bool sorted) {
        s = intercept;
        uint256 bad = 0;
        uint256 nf = numFeatures;
        assembly {
            cache := mload(0x40)
            let n := data.length
            mstore(0x40, add(cache, shl(5, n)))
            sorted := 1
            let prev := 0
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                let idx := calldataload(add(data.offset, shl(5, i)))
                bad := or(bad, iszero(lt(idx, nf)))
                if lt(idx, prev) { sorted := 0 }
                prev := idx
                let word := sload(add(WEIGHTS, div(idx, PER_SLOT)))
                mstore(add(cache, shl(5, i)), word)
                s := add(s, signextend(9, shr(mul(WIDTH, mod(idx, PER_SLOT)), word)))
            }
        }
        if (bad != 0) _revertBadIndex(data);
    }

    /// intercept + the sum of the listed weights; reverts on a negative, malformed or too large index.
    function _score(int64[] calldata data) private view returns (int256 s) {
        s = intercept;
        uint256 bad = 0; // any index out of range: one branch after the loop instead of one per index
        uint256 nf = numFeatures;
        assembly {
            let p := data.offset
            for { let end := add(p, shl(5, data.length)) } lt(p, end) { p := add(p, 0x20) } {
                let idx := calldataload(p)
                bad := or(bad, iszero(lt(idx, nf)))
                s := add(s, signextend(9, shr(mul(WIDTH, mod(idx, PER_SLOT)), sload(add(WEIGHTS, div(idx, PER_SLOT))))))
            }
        }
        // Negative int64 values and dirty high bits read as huge unsigned words: out of range too. (A
        // bad index was read above from a slot outside the model, harmlessly: the call reverts now.)
        if (bad != 0) _revertBadIndex(data);
    }

    function _revertBadIndex(int64[] calldata data) private view {
        for (uint256 i = 0; i < data.length; ++i) {
            uint256 word;
            assembly {
                word := calldataload(add(data.offset, shl(5, i)))
            }
            if (word > 0x7fffffffffffffff) revert NegativeFeatureIndex(int64(int256(word)));
            if (word >= numFeatures) revert FeatureOutOfRange(word);
        }
    }

    function _setWeight(uint256 index, int80 w) internal {
        if (averaging != 0) {
            uint256 at = AVERAGED + index;
            assembly {
                sstore(at, or(and(sload(at), not(MASK)), and(w, MASK)))
            }
            return;
        }
        uint256 slot = WEIGHTS + index / PER_SLOT;
        uint256 shift = WIDTH * (index % PER_SLOT);
        assembly {
            let word := sload(slot)
            sstore(slot, or(and(word, not(shl(shift, MASK))), shl(shift, and(w, MASK))))
        }
    }
}
