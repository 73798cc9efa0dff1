// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "./Ownable.sol";
import {IClassifier} from "./Classifier.sol";

/// @notice Binary perceptron over dense inputs. A sample is the full vector d (length nFeatures,
/// each value x * 1e9 rounded) and must have unit L2 norm: |sum d_i^2 - 1e18| < 1e11, else revert.
/// Weights w, intercept b and learning rate r are fixed point with scale 1e9.
///
/// predict: 1 if b * 1e9 + sum_i w_i * d_i > 0, else 0. This is "b + sum w_i d_i / 1e9 > 0" with the
/// intercept put on the dot product's scale (1e18) instead of dividing the dot product down, so no
/// rounding happens at all. (The reference added b, scale 1e9, to the 1e18-scaled dot product.)
/// update: only on a mistake, w_i += s * (d_i * r / 1e9) with s = +1 for label 1 and -1 for label 0;
/// the division truncates toward zero (Solidity's signed division). The intercept never changes.
///
/// Gas: int80 weights packed three to a slot at WEIGHTS + i / 3; intercept, learning rate and
/// dimension are immutables.
contract DensePerceptron is Ownable, IClassifier {
    uint256 private constant WEIGHTS = 0xdca2 << 240;
    uint256 private constant MASK = 0xffffffffffffffffffff; // 80 bits
    int256 private constant ONE = 1e9;
    int256 private constant ONE_SQUARED = 1e18;
    int256 private constant NORM_TOLERANCE = 1e11;

    int80 public immutable intercept;
    int80 public immutable learningRate;
    uint256 public immutable nFeatures;

    string[] public classifications;

    event AddClass(string name, uint256 index);

    error BadClassification(uint64 classification);
    error UnalignedChunk(uint256 startIndex);
    error ChunkOutOfRange(uint256 startIndex, uint256 length);
    error DimensionMismatch(uint256 length, uint256 expected);
    error NotUnitNorm(uint256 squaredNorm);
    error MalformedValue(uint256 index);
    error WeightOverflow(uint256 index);

    constructor(string[] memory classifications_, int80 intercept_, int80 learningRate_, uint256 nFeatures_) {
        if (classifications_.length != 2) revert BadClassification(uint64(classifications_.length));
        if (nFeatures_ == 0 || nFeatures_ > type(uint64).max) revert DimensionMismatch(nFeatures_, 1);
        for (uint256 i = 0; i < 2; ++i) {
            classifications.push(classifications_[i]);
            emit AddClass(classifications_[i], i);
        }
        intercept = intercept_;
        learningRate = learningRate_;
        nFeatures = nFeatures_;
    }

    function getNumClassifications() external view returns (uint256) {
        return classifications.length;
    }

    /// Deployment in chunks: weights for indices startIndex .. startIndex+len-1; startIndex is a
    /// multiple of 3 so whole slots are written without reading them first.
    function initializeWeights(uint256 startIndex, int80[] calldata weights_) external onlyOwner {
        uint256 n = weights_.length;
        if (startIndex % 3 != 0) revert UnalignedChunk(startIndex);
        if (startIndex + n > nFeatures) revert ChunkOutOfRange(startIndex, n);
        assembly {
            let slot := add(WEIGHTS, div(startIndex, 3))
            for { let i := 0 } lt(i, n) { i := add(i, 3) } {
                let word := 0
                for { let j := 0 } and(lt(j, 3), lt(add(i, j), n)) { j := add(j, 1) } {
                    let w := calldataload(add(weights_.offset, shl(5, add(i, j))))
                    if iszero(eq(signextend(9, w), w)) { revert(0, 0) } // not an int80
                    word := or(word, shl(mul(80, j), and(w, MASK)))
                }
                sstore(slot, word)
                slot := add(slot, 1)
            }
        }
    }

    function weights(uint256 index) public view returns (int80 w) {
        uint256 slot = WEIGHTS + index / 3;
        uint256 shift = 80 * (index % 3);
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

    function predict(int64[] calldata data) external view returns (uint64) {
        return _score(data) > 0 ? 1 : 0;
    }

    function update(int64[] calldata data, uint64 classification) external onlyOwner {
        if (classification > 1) revert BadClassification(classification);
        if ((_score(data) > 0 ? 1 : 0) == classification) return;
        int256 rate = classification == 1 ? int256(learningRate) : -int256(learningRate);
        uint256 n = data.length;
        uint256 bad = type(uint256).max;
        // Values were checked by _score. One read and one write per slot of three weights.
        assembly {
            let slot := WEIGHTS
            for { let i := 0 } lt(i, n) { i := add(i, 3) } {
                let word := sload(slot)
                let out := 0
                for { let j := 0 } and(lt(j, 3), lt(add(i, j), n)) { j := add(j, 1) } {
                    let shift := mul(80, j)
                    let d := calldataload(add(data.offset, shl(5, add(i, j))))
                    let w := add(signextend(9, shr(shift, word)), sdiv(mul(d, rate), ONE))
                    if iszero(eq(signextend(9, w), w)) { bad := add(i, j) }
                    out := or(out, shl(shift, and(w, MASK)))
                }
                if iszero(eq(bad, not(0))) { break }
                sstore(slot, out)
                slot := add(slot, 1)
            }
        }
        if (bad != type(uint256).max) revert WeightOverflow(bad);
    }

    /// b * 1e9 + sum w_i d_i (scale 1e18); reverts on a wrong length, a malformed value or a norm
    /// outside the tolerance.
    function _score(int64[] calldata data) private view returns (int256 s) {
        uint256 n = data.length;
        if (n != nFeatures) revert DimensionMismatch(n, nFeatures);
        int256 norm = 0;
        uint256 bad = type(uint256).max;
        assembly {
            let slot := WEIGHTS
            let word := 0
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                let lane := mod(i, 3)
                if iszero(lane) {
                    word := sload(slot)
                    slot := add(slot, 1)
                }
                let d := calldataload(add(data.offset, shl(5, i)))
                if iszero(eq(signextend(7, d), d)) {
                    bad := i
                    break
                }
                norm := add(norm, mul(d, d))
                s := add(s, mul(signextend(9, shr(mul(80, lane), word)), d))
            }
        }
        if (bad != type(uint256).max) revert MalformedValue(bad);
        int256 off = norm - ONE_SQUARED;
        if (off >= NORM_TOLERANCE || off <= -NORM_TOLERANCE) revert NotUnitNorm(uint256(norm));
        s += int256(intercept) * ONE;
    }
}
